"""The scripted model: a deterministic, offline provider for tests, demos and examples.

A :class:`ScriptedProvider` plays a script of :class:`ScriptedResponse` values in order, one per
model call: text (optionally streamed in chunks), tool calls, usage, a finish reason, or an error
that simulates a provider failure. Write the script in code, or in a JSON or TOML file::

    # script.toml
    [[responses]]
    text = "Let me look."
    [[responses.tool_calls]]
    name = "read_file"
    arguments = { path = "notes.txt" }

    [[responses]]
    text = "The notes say hello."
    chunk_size = 4
    usage = { input_tokens = 120, output_tokens = 8 }

It lives in lash itself (like :class:`lash.store.MemoryStore`) so that ``lash.testing`` can
build on it; the builtin ``scripted`` plugin registers it as the provider ``"scripted"``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from lash._contract.annotations import resolve_here
from lash._contract.serialization import describe_value, structure, validation_problems
from lash._contract.types import ToolCall, Usage
from lash.errors import ConfigError, ProviderError, ScriptExhausted

if TYPE_CHECKING:
    # The model event classes load when the provider first streams: the scripted plugin is
    # imported by every `lash` command.
    from lash._contract.providers import (
        ModelDone,
        ModelEvent,
        ModelRequest,
        TextDelta,
        ToolCallReady,
    )

#: The name the plugin registers its provider under, and the default ``provider`` of its errors.
PROVIDER_NAME = "scripted"


@attrs.frozen
class ScriptedToolCall:
    """A tool call in a scripted response.

    ``id`` defaults to ``call_<n>``, where ``n`` counts the tool calls the provider has played
    (1-based), so ids are deterministic and unique within one provider. ``invalid_arguments``
    simulates a model that sent arguments which are not a JSON object.
    """

    __module__ = "lash"

    name: str
    arguments: Mapping[str, Any] = attrs.field(factory=dict)
    id: str | None = None
    invalid_arguments: str | None = None


def _calls(value: Iterable[ScriptedToolCall]) -> tuple[ScriptedToolCall, ...]:
    return tuple(value)


def _positive_or_none(_: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{attribute.name} must be at least 1 (or unset), got {value!r}")


@attrs.frozen
class ScriptedResponse:
    """One model call's response.

    ``text`` streams as one :class:`TextDelta`, or in pieces of ``chunk_size`` characters.
    ``tool_calls`` follow the text. ``finish_reason`` defaults to ``"tool_calls"`` when there are
    tool calls and ``"stop"`` otherwise. With ``error`` set the call fails with a
    :class:`lash.ProviderError` carrying that message, after streaming ``text`` (so text plus
    error simulates a failure mid-stream). ``delay`` waits that many seconds before the first event
    (a slow model, for cancellation and timeout tests).
    """

    __module__ = "lash"

    text: str = ""
    tool_calls: tuple[ScriptedToolCall, ...] = attrs.field(default=(), converter=_calls)
    usage: Usage = attrs.field(factory=Usage)
    chunk_size: int | None = attrs.field(default=None, validator=_positive_or_none)
    finish_reason: str | None = None
    error: str | None = None
    delay: float = 0.0

    def summary(self) -> str:
        """A one-line description (used in :meth:`ScriptedProvider.assert_consumed`)."""
        parts: list[str] = []
        if self.text:
            text = self.text if len(self.text) <= 40 else self.text[:37] + "..."
            parts.append(f"text={text!r}")
        if self.tool_calls:
            parts.append("tool_calls=[" + ", ".join(c.name for c in self.tool_calls) + "]")
        if self.error is not None:
            parts.append(f"error={self.error!r}")
        return " ".join(parts) or "(empty response)"


@attrs.frozen
class _ScriptFile:
    # The shape of a script file; structuring through it reports unknown top-level keys too.
    responses: list[ScriptedResponse]


def _plural(n: int) -> str:
    return f"{n} response" if n == 1 else f"{n} responses"


def load_script(path: str | Path) -> tuple[ScriptedResponse, ...]:
    """Read a script file: JSON (a list of responses, or ``{"responses": [...]}``) or TOML
    (``[[responses]]`` tables).

    :raises ConfigError: the file is missing, unparsable, or a field has the wrong type; the
        message names the file, the field path (``responses[1].usage.input_tokens``), what was
        expected and what was found.
    """
    file = Path(path)
    where = str(file)
    suffix = file.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise ConfigError(
            f"scripted provider: unsupported script file type {file.suffix!r} "
            "(use a .json or .toml file)",
            path=where,
        )
    try:
        raw = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"scripted provider: cannot read the script file: {exc.strerror or exc}", path=where
        ) from None
    data: Any
    if suffix == ".json":
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"scripted provider: invalid JSON: {exc.msg}",
                path=where,
                line=exc.lineno,
                column=exc.colno,
            ) from None
        if isinstance(data, list):
            data = {"responses": data}
    else:
        import tomllib  # only a TOML script pays for the parser

        try:
            data = tomllib.loads(raw)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"scripted provider: invalid TOML: {exc}", path=where) from None
    if not isinstance(data, dict):
        raise ConfigError(
            "scripted provider: a script is a list of responses or an object with a "
            f"'responses' list, got {type(data).__name__}",
            path=where,
        )
    try:
        return tuple(structure(data, _ScriptFile).responses)
    except Exception as exc:
        problems = validation_problems(exc, data) or [str(exc)]
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(f"scripted provider: invalid script:\n{lines}", path=where) from None


def _as_response(item: ScriptedResponse | str | Mapping[str, Any], index: int) -> ScriptedResponse:
    """Response ``index`` of a script, as a :class:`ScriptedResponse`.

    :raises ValueError: naming the response by its index and each bad field."""
    if isinstance(item, ScriptedResponse):
        return item
    if isinstance(item, str):
        return ScriptedResponse(text=item)
    where = f"invalid scripted response #{index}"
    if not isinstance(item, Mapping):
        raise ValueError(
            f"{where}: expected a str, a mapping or a lash.ScriptedResponse, got "
            f"{describe_value(item)}"
        )
    try:
        return structure(dict(item), ScriptedResponse)
    except Exception as exc:
        problems = validation_problems(exc, dict(item), "response") or [str(exc)]
        raise ValueError(f"{where}:\n" + "\n".join(problems)) from None


class ScriptedProvider:
    """Plays a script of responses, one per model call, in order.

    ``responses`` may mix :class:`ScriptedResponse` values, plain strings (a text reply) and
    mappings (structured like a script file entry). Every request is recorded in
    :attr:`requests`, so tests can assert on what the model was shown.
    """

    __module__ = "lash"

    def __init__(
        self,
        responses: Iterable[ScriptedResponse | str | Mapping[str, Any]] = (),
        *,
        name: str = PROVIDER_NAME,
    ) -> None:
        self.name = name
        self._script: list[ScriptedResponse] = [_as_response(r, i) for i, r in enumerate(responses)]
        self._next = 0
        self._calls_played = 0
        #: Every request this provider received, in order (including failed and exhausted calls).
        self.requests: list[ModelRequest] = []

    @classmethod
    def from_file(cls, path: str | Path, *, name: str = PROVIDER_NAME) -> ScriptedProvider:
        """A provider playing the script in a JSON or TOML file (see :func:`load_script`)."""
        return cls(load_script(path), name=name)

    @property
    def script(self) -> tuple[ScriptedResponse, ...]:
        """The whole script, played and unplayed."""
        return tuple(self._script)

    @property
    def consumed(self) -> int:
        """How many responses have been played."""
        return self._next

    @property
    def remaining(self) -> int:
        """How many responses are left to play."""
        return len(self._script) - self._next

    def extend(self, responses: Iterable[ScriptedResponse | str | Mapping[str, Any]]) -> None:
        """Append responses to the end of the script (numbered on from the script's, in an
        error: all are checked before any is added)."""
        start = len(self._script)
        self._script.extend([_as_response(r, i) for i, r in enumerate(responses, start)])

    def assert_consumed(self) -> None:
        """Fail unless every response was played.

        :raises AssertionError: listing each unplayed response (its position and a summary).
        """
        if self.remaining == 0:
            return
        unplayed = "\n".join(
            f"  - #{i + 1}: {r.summary()}" for i, r in enumerate(self._script) if i >= self._next
        )
        raise AssertionError(
            f"scripted provider: {self.remaining} of {_plural(len(self._script))} "
            f"not played:\n{unplayed}"
        )

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """Play the next response of the script as a stream of model events.

        :raises ScriptExhausted: every response was already played.
        :raises lash.ProviderError: the response is a scripted ``error``.
        """
        ModelDone, TextDelta, ToolCallReady, make_call = _model_events()
        self.requests.append(request)
        if self._next >= len(self._script):
            total = len(self._script)
            raise ScriptExhausted(
                f"scripted provider: the script has {_plural(total)} and all were used; "
                f"add more responses to the script (model call #{len(self.requests)} "
                "asked for one)",
                provider=self.name,
            )
        response = self._script[self._next]
        # Consume before the first await: a call that fails or is cancelled still used its
        # response, so a retried call gets the next one (as a real model call would differ too).
        self._next += 1
        calls = []
        for call in response.tool_calls:
            self._calls_played += 1
            calls.append(
                make_call(  # (positional: a third cheaper than by keyword)
                    call.id if call.id is not None else f"call_{self._calls_played}",
                    call.name,
                    dict(call.arguments) if call.invalid_arguments is None else {},
                    call.invalid_arguments,
                )
            )
        if response.delay > 0:
            import asyncio  # not at the top: registering the provider must not load asyncio

            await asyncio.sleep(response.delay)
        text = response.text
        if text:
            size = response.chunk_size or len(text)
            for start in range(0, len(text), size):
                yield TextDelta(text[start : start + size])
        if response.error is not None:
            raise ProviderError(response.error, provider=self.name)
        for tool_call in calls:
            yield ToolCallReady(tool_call)
        finish = response.finish_reason or ("tool_calls" if calls else "stop")
        yield ModelDone(usage=response.usage, finish_reason=finish)

    def __repr__(self) -> str:
        return (
            f"<ScriptedProvider {self.name!r} consumed={self.consumed} remaining={self.remaining}>"
        )


@functools.cache
def _model_events() -> tuple[
    Callable[..., ModelDone],
    Callable[..., TextDelta],
    Callable[..., ToolCallReady],
    Callable[..., ToolCall],
]:
    """The model event classes' makers, and the tool call's (:func:`lash._contract.slots.maker`:
    the same objects as the classes make, for a third of their cost), imported on the first
    stream (cached: an import statement in :meth:`ScriptedProvider.stream` cost ~0.7 µs a model
    call, 1 % of a benchmark turn)."""
    from lash._contract.providers import ModelDone, TextDelta, ToolCallReady
    from lash._contract.slots import maker

    return maker(ModelDone), maker(TextDelta), maker(ToolCallReady), maker(ToolCall)


resolve_here(globals())
