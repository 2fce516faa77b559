"""Model options in three layers (host config < session < turn); the provider sees them merged."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import lash

CONFIG = Path(__file__).with_name("model_options.toml")


class ShowOptions:
    """A provider that answers with the model options of its request."""

    async def stream(self, request: lash.ModelRequest) -> AsyncIterator[lash.ModelEvent]:
        fields = request.options.set_fields()
        yield lash.TextDelta(", ".join(f"{name}={value!r}" for name, value in fields.items()))
        yield lash.ModelDone()


class Show:
    lash_plugin = lash.PluginMeta(name="show")

    @lash.hookimpl
    def register_providers(self, register: lash.RegisterProvider) -> None:
        register("show", ShowOptions())


async def main() -> lash.Session:
    core = lash.LashCore(
        config=lash.HostConfig.load(CONFIG), plugins=["standard", "stores", Show()]
    )
    async with core:
        session = await core.session("options").open()
        print("host:   ", (await session.turn("hi").run()).text)
        # The session's layer is committed with the session, and survives a restart.
        await session.configure(model_options={"temperature": 0.7, "stop": ["###"]})
        print("session:", (await session.turn("hi").run()).text)
        # A turn's layer applies to that turn's model calls only.
        turn = session.turn("hi", model_options=lash.ModelOptions(seed=42, extra={"user": "u1"}))
        print("turn:   ", (await turn.run()).text)
        print("next:   ", (await session.turn("hi").run()).text)
        # Bad values are refused before anything runs, naming the field.
        try:
            session.turn("hi", model_options={"top_p": 1.5})
        except lash.SessionError as exc:
            print(exc)
        return session


if __name__ == "__main__":
    asyncio.run(main())
