"""The builtin ``shell``: a host starts commands as processes in a workspace; a worker runs
them, with a timeout, their output capped, and their exit status in the result."""

import asyncio
import tempfile

import lash

# Listed by object so the example also runs where the builtin is not installed as an entry point.
from lash_plugins_builtin import shell


async def main() -> None:
    with tempfile.TemporaryDirectory() as workspace:
        core = lash.LashCore(
            plugins=["stores", shell],
            autoload=False,
            store="memory://",
            options={"shell": {"root": workspace, "max_output_bytes": 64, "timeout": 10}},
        )
        async with core:
            commands = {
                "build": {"argv": ["sh", "-c", "echo built > out.txt; cat out.txt; exit 3"]},
                "noisy": {"argv": ["sh", "-c", "yes spam | head -n 1000"]},
                "stuck": {"argv": ["sleep", "30"], "timeout": 0.2},
            }
            started = {
                name: await core.processes.start("shell", payload, key=f"example:{name}")
                for name, payload in commands.items()
            }
            await core.run_worker(once=True)
            for name, record in started.items():
                done = await core.processes.get(record.id)
                assert done is not None
                result = done.result
                print(f"{name}: {done.status}, exit {result['exit_code']}")
                print(f"  stdout ({result['stdout_bytes']} bytes): {result['stdout']!r}")
                print(f"  truncated: {result['truncated']}, timed out: {result['timed_out']}")


if __name__ == "__main__":
    asyncio.run(main())
