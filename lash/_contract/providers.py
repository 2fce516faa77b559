"""The model-provider contract: requests, streamed events, and the provider protocol.

A provider turns a :class:`ModelRequest` into an async stream of :class:`ModelEvent` values:
any number of :class:`TextDelta` and :class:`ToolCallReady` events, then exactly one
:class:`ModelDone` carrying usage. Providers are contributed by plugins through
``register_providers``; the kernel never talks to a model any other way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol, runtime_checkable

import attrs

from lash._contract.annotations import resolve_here
from lash._contract.types import Message, ToolCall, Usage


@attrs.frozen
class ToolSpec:
    """A tool as a model sees it: name, description and JSON schema of its arguments."""

    name: str
    description: str
    parameters: Mapping[str, Any]

    __module__ = "lash"


@attrs.frozen
class ModelRequest:
    """One model call: the model, the prompt messages, the tools on offer, provider options."""

    model: str
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    options: Mapping[str, Any] = attrs.field(factory=dict)

    __module__ = "lash"


@attrs.frozen
class TextDelta:
    """A chunk of assistant text."""

    text: str

    __module__ = "lash"


@attrs.frozen
class ToolCallReady:
    """A complete tool call (providers assemble streamed argument fragments themselves)."""

    call: ToolCall

    __module__ = "lash"


@attrs.frozen
class ModelDone:
    """The end of a response: token usage and the provider's finish reason."""

    usage: Usage = Usage()
    finish_reason: str = "stop"

    __module__ = "lash"


#: What a provider's stream yields.
ModelEvent = TextDelta | ToolCallReady | ModelDone


@attrs.frozen
class ModelResponse:
    """A whole response, as gathered from a stream by :func:`collect_response`."""

    text: str
    tool_calls: tuple[ToolCall, ...]
    usage: Usage
    finish_reason: str

    __module__ = "lash"


@runtime_checkable
class Provider(Protocol):
    """What ``register_providers`` registers: something that streams model responses.

    ``stream`` is an async generator. It raises :class:`lash.ProviderError` (or a subclass) for
    failures the host should see; the kernel turns them into a ``failed`` turn outcome.
    """

    def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]: ...


async def collect_response(events: AsyncIterator[ModelEvent]) -> ModelResponse:
    """Drain a provider stream into one :class:`ModelResponse`."""
    text: list[str] = []
    calls: list[ToolCall] = []
    usage = Usage()
    finish = "stop"
    async for event in events:
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, ToolCallReady):
            calls.append(event.call)
        else:
            usage = usage + event.usage
            finish = event.finish_reason
    return ModelResponse("".join(text), tuple(calls), usage, finish)


# Protocol classes cannot set __module__ in their body (it would become a protocol member).
Provider.__module__ = "lash"


resolve_here(globals())
