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
from lash._contract.modeloptions import ModelOptions
from lash._contract.turn_types import Message
from lash._contract.types import ToolCall, Usage

# ToolSpec is defined with the tool calls, where building a tool (every plugin load) finds it
# without this module; the provider contract names it here too.
from lash._contract.types import ToolSpec as ToolSpec
from lash.errors import ProviderError


@attrs.frozen
class OutputSpec:
    """The shape a turn's answer must have (structured output): a JSON schema, with the
    ``name`` and ``description`` a model is shown with it.

    ``session.turn(text, output=...)`` takes one of these, an attrs class or a JSON schema
    dict. A provider that declares ``supports_output_schema = True`` receives it as
    ``ModelRequest.output`` and asks its API for a response in that format (the
    ``openai`` provider sends ``response_format``); others never see it: the kernel offers the
    model a final-answer tool with this schema instead.
    """

    schema: Mapping[str, Any]
    name: str = "output"
    description: str = ""

    __module__ = "lash"


def _request_options(value: ModelOptions | Mapping[str, Any] | None) -> ModelOptions:
    # A plain mapping (lash 0.x: raw body fields) still works: known keys become fields, the
    # rest go to `extra`, sent as they are.
    if value is None:
        return ModelOptions()
    if isinstance(value, ModelOptions):
        return value
    from lash._contract.modeloptions_check import model_options

    known = {a.name for a in attrs.fields(ModelOptions)}
    data = {k: v for k, v in value.items() if k in known}
    extra = {k: v for k, v in value.items() if k not in known}
    if extra:
        data["extra"] = {**data.get("extra", {}), **extra}
    return model_options(data)


@attrs.frozen
class ModelRequest:
    """One model call: the model, the prompt messages, the tools on offer, the merged
    :class:`lash.ModelOptions` (host < session < turn), and for a provider that supports it
    (``supports_output_schema``), the :class:`lash.OutputSpec` the answer must follow.

    ``options`` also accepts a plain mapping: known keys become fields, the others ``extra``.
    """

    model: str
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    options: ModelOptions = attrs.field(factory=ModelOptions, converter=_request_options)
    output: OutputSpec | None = None

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

    A provider whose API can be asked for JSON that follows a schema sets the class attribute
    ``supports_output_schema = True``: structured-output turns then send it
    ``ModelRequest.output`` (and expect the answer as JSON text) instead of offering a
    final-answer tool.
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


_COUNT_MIN, _COUNT_MAX = -(2**63), 2**63 - 1  # what a store's 64-bit integer holds


def usage_counts(provider: str, usage: Usage) -> Usage:
    """A model call's usage with int token counts: a whole float (``12.0``, as some JSON APIs
    give) becomes its int; anything else that is not an int in 64 bits (a fraction, a bool,
    ``None``, a count past 2**63) fails the model call, naming the provider: stored with the
    turn, such a count would not read back (every later load of the session failed), or would
    not be stored at all."""
    a, b, c = usage.input_tokens, usage.output_tokens, usage.cached_tokens
    if (
        type(a) is int
        and type(b) is int
        and type(c) is int
        and (
            # (Every model call: counts of 0 to 2**63 - 1 told by one test of the three; a
            # negative one makes the OR negative, and each count's range is tested.)
            not (a | b | c) >> 63
            or (
                _COUNT_MIN <= a <= _COUNT_MAX
                and _COUNT_MIN <= b <= _COUNT_MAX
                and _COUNT_MIN <= c <= _COUNT_MAX
            )
        )
    ):
        return usage
    counts = []
    for field in ("input_tokens", "output_tokens", "cached_tokens"):
        value = getattr(usage, field)
        if type(value) is float and value.is_integer():
            value = int(value)
        if type(value) is not int or not _COUNT_MIN <= value <= _COUNT_MAX:
            raise ProviderError(
                f"provider {provider!r} reported usage with {field} {value!r} "
                f"({type(value).__name__}): token counts are ints",
                provider=provider,
            )
        counts.append(value)
    return Usage(*counts)
