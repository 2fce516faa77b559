"""Embed lash from configuration: provider, model and plugins come from ``lash.toml``."""

import asyncio

import lash


async def main(config: str | None = None) -> lash.TurnResult:
    # None: $LASH_CONFIG, else the nearest lash.toml (or pyproject.toml with [tool.lash]).
    async with lash.LashCore.from_config(config) as core:
        session = await core.session("quickstart").open()
        result = await session.turn("Hi, who are you?").run()
        print(f"{result.outcome}: {result.text}")
        return result


if __name__ == "__main__":
    asyncio.run(main())
