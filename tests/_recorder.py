"""The provider plugin kernel tests share: plays a script and records every request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import lash


class Recorder:
    """A provider plugin that plays a script and records every request it receives."""

    lash_plugin = lash.PluginMeta(name="recorder")

    def __init__(self, responses: Sequence[Any]) -> None:
        self.script = lash.ScriptedProvider(list(responses))
        self.requests: list[lash.ModelRequest] = []

    @lash.hookimpl
    def register_providers(self, register: lash.RegisterProvider) -> None:
        register("recorder", self)

    async def stream(self, request: lash.ModelRequest) -> AsyncIterator[lash.ModelEvent]:
        self.requests.append(request)
        async for event in self.script.stream(request):
            yield event
