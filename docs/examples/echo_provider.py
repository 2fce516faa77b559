"""A plugin contributing a model provider: an "echo" model that repeats the user's words."""

from __future__ import annotations

from collections.abc import AsyncIterator

import lash


class EchoProvider:
    """Streams the last user message back, one word per event.

    A message ``/tool NAME`` makes it ask for tool ``NAME`` (without arguments) instead; once the
    tool has answered, it reports what the tool said.
    """

    async def stream(self, request: lash.ModelRequest) -> AsyncIterator[lash.ModelEvent]:
        last = request.messages[-1]
        if last.role == "tool":  # the result of the tool call asked for below
            yield lash.TextDelta(f"The tool said: {last.content}")
            yield lash.ModelDone(lash.Usage(len(request.messages), 4))
            return
        words = last.content.split()
        if words[:1] == ["/tool"] and len(words) == 2:
            call = lash.ToolCall(id=f"echo-{len(request.messages)}", name=words[1])
            yield lash.ToolCallReady(call)
            yield lash.ModelDone(lash.Usage(len(request.messages), 1), finish_reason="tool_calls")
            return
        for i, word in enumerate(words):
            yield lash.TextDelta(word if i == 0 else " " + word)
        # Exactly one ModelDone ends every response: usage and the finish reason.
        yield lash.ModelDone(lash.Usage(input_tokens=len(words), output_tokens=len(words)))


class Echo:
    """The plugin: registers the provider once per core (build clients here, no I/O)."""

    lash_plugin = lash.PluginMeta(name="echo", description="A model that echoes its input.")

    @lash.hookimpl
    def register_providers(self, register: lash.RegisterProvider) -> None:
        register("echo", EchoProvider())
