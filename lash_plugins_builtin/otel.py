"""``otel``: OpenTelemetry spans for turns, model calls and tool calls (opt-in).

Built on ``opentelemetry-api`` (``pip install 'lash-sdk[otel]'``); the host installs and
configures an SDK (a tracer provider with its exporters), as for any instrumented library.
Each turn is a span (``invoke_agent lash``); each model call a child span following the GenAI
semantic conventions (``chat {model}``: ``gen_ai.operation.name``, ``gen_ai.provider.name``,
``gen_ai.request.model``, ``gen_ai.usage.input_tokens`` / ``output_tokens``,
``gen_ai.response.finish_reasons``); each tool call a child span (``execute_tool {name}``:
``gen_ai.tool.name``, ``gen_ai.tool.call.id``). Every span carries ``lash.session.id`` and
``lash.turn.id`` (and ``gen_ai.conversation.id``, the session id). A failed model call, a tool
call with an error result and a failed turn have status ``ERROR``. A turn started while a span
is current (the host's request handler, say) is that span's child. A turn continued after tool
approval gets a span of its own (same turn id, ``lash.turn.continued``).

Opt-in: without ``otel`` in the host's ``plugins`` list nothing of OpenTelemetry is imported
and the kernel makes no model-call dispatch. The plugin is a class, so each core has its own
spans in flight; ``OtelTracing(tracer_provider=...)`` passed to :class:`lash.LashCore` uses that
provider instead of the global one (tests use the SDK's in-memory exporter that way).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

import lash

if TYPE_CHECKING:
    # Imported on first use: loading the builtins reads this module's PluginMeta even when the
    # plugin is not enabled, and that must not import OpenTelemetry.
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = ["TRACER_NAME", "OtelTracing"]

#: The instrumentation scope of lash's spans.
TRACER_NAME = "lash"
#: Characters of an error kept as a span's status description.
_DESCRIPTION = 500


@attrs.define
class _TurnSpans:
    """The spans of one running turn: the turn's and its tool calls' still open."""

    turn_id: str
    span: Span
    tools: dict[str, Span] = attrs.field(factory=dict)


class OtelTracing:
    """The ``otel`` plugin: spans for turns, model calls and tool calls.

    :param tracer_provider: where spans go; by default the global one
        (``opentelemetry.trace.set_tracer_provider``) at the first span.
    """

    lash_plugin = lash.PluginMeta(
        name="otel",
        description="OpenTelemetry spans for turns, model calls (GenAI conventions) and tool "
        "calls.",
        opt_in=True,
    )

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._provider = tracer_provider
        self._tracer: Tracer | None = None
        # One running turn per session in a core (the session's lease), so the session id finds
        # the turn a model or tool call belongs to.
        self._running: dict[str, _TurnSpans] = {}

    def tracer(self) -> Tracer:
        """The plugin's tracer (scope ``lash``), made at first use."""
        if self._tracer is None:
            try:
                from opentelemetry import trace
            except ImportError as exc:
                raise lash.ConfigError(
                    "the otel plugin needs opentelemetry-api: pip install 'lash-sdk[otel]'"
                ) from exc
            self._tracer = trace.get_tracer(
                TRACER_NAME, _lash_version(), tracer_provider=self._provider
            )
        return self._tracer

    # -- the turn ------------------------------------------------------------------------------

    @lash.hookimpl(tryfirst=True)
    def before_turn(self, turn: lash.TurnView) -> None:
        # tryfirst: the span covers the other plugins' before_turn too.
        self._turn_spans(turn, continued=False)

    @lash.hookimpl
    def checkpoint(self, turn: lash.TurnView) -> None:
        # A turn continued after tool approval runs no before_turn: its first checkpoint (after
        # the approved calls ran) opens its span.
        self._turn_spans(turn)

    @lash.hookimpl(trylast=True)
    def turn_finalized(self, turn: lash.TurnView) -> None:
        spans = self._turn_spans(turn)
        del self._running[turn.session.id]
        result = turn.result
        span = spans.span
        why = "the turn ended"
        if result is not None:
            span.set_attribute("lash.turn.outcome", result.outcome)
            why = f"the turn ended {result.outcome}"
            if result.reason is not None:
                span.set_attribute("lash.turn.reason", result.reason)
                why += f" ({result.reason})"
            span.set_attribute("gen_ai.usage.input_tokens", result.usage.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", result.usage.output_tokens)
            if result.outcome == "failed":
                _fail(span, result.error or "the turn failed", result.error_plugin or "turn")
        # Tool calls that never reached after_tool_call: short-circuited by another plugin, or
        # held for approval (not an error: the turn continues once they are answered).
        held = result is not None and result.reason == "awaiting_approval"
        for tool in spans.tools.values():
            if held:
                tool.set_attribute("lash.tool.awaiting_approval", True)
            else:
                _fail(tool, f"tool call not completed: {why}", "not_completed")
            tool.end()
        span.end()

    def _turn_spans(self, turn: lash.TurnView, *, continued: bool = True) -> _TurnSpans:
        """The spans of the session's running turn, its span started if it has none yet (a
        ``continued`` one: a turn continued after tool approval, which runs no
        ``before_turn``)."""
        session = turn.session.id
        spans = self._running.get(session)
        if spans is not None and spans.turn_id == turn.id:
            return spans
        if spans is not None:  # a turn whose turn_finalized never came (the task was killed)
            _end_all(spans, "the next turn of the session started")
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "lash",
            "gen_ai.conversation.id": session,
            "lash.session.id": session,
            "lash.turn.id": turn.id,
            "lash.turn.index": turn.index,
        }
        if continued:
            attributes["lash.turn.continued"] = True
        span = self.tracer().start_span("invoke_agent lash", attributes=attributes)
        spans = self._running[session] = _TurnSpans(turn.id, span)
        return spans

    # -- model calls ---------------------------------------------------------------------------

    @lash.hookimpl
    def model_call_finished(
        self,
        turn: lash.TurnView,
        provider: str,
        request: lash.ModelRequest,
        response: lash.ModelResponse | None,
        error: BaseException | None,
        started: float,
    ) -> None:
        from opentelemetry import trace

        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": request.model,
            "gen_ai.conversation.id": turn.session.id,
            "lash.session.id": turn.session.id,
            "lash.turn.id": turn.id,
        }
        options = request.options
        for name, value in (
            ("temperature", options.temperature),
            ("max_tokens", options.max_tokens),
            ("top_p", options.top_p),
            ("seed", options.seed),
        ):
            if value is not None:
                attributes[f"gen_ai.request.{name}"] = value
        if options.stop:
            attributes["gen_ai.request.stop_sequences"] = list(options.stop)
        if response is not None:
            usage = response.usage
            attributes["gen_ai.usage.input_tokens"] = usage.input_tokens
            attributes["gen_ai.usage.output_tokens"] = usage.output_tokens
            if usage.cached_tokens:
                attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cached_tokens
            attributes["gen_ai.response.finish_reasons"] = [response.finish_reason]
        spans = self._turn_spans(turn)
        span = self.tracer().start_span(
            f"chat {request.model}",
            context=trace.set_span_in_context(spans.span),
            kind=trace.SpanKind.CLIENT,
            attributes=attributes,
            start_time=int(started * 1e9),
        )
        if error is not None:
            span.record_exception(error)
            _fail(span, f"{type(error).__name__}: {error}", _qualname(error))
        span.end()

    # -- tool calls ----------------------------------------------------------------------------

    @lash.hookimpl(tryfirst=True)
    def before_tool_call(self, call: lash.ToolCall, context: lash.ToolContext) -> None:
        # tryfirst: the span covers the other plugins' before_tool_call too.
        from opentelemetry import trace

        spans = self._running.get(context.session_id)
        if spans is None:
            return  # a tool call outside a traced turn
        spans.tools[call.id] = self.tracer().start_span(
            f"execute_tool {call.name}",
            context=trace.set_span_in_context(spans.span),
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": call.name,
                "gen_ai.tool.call.id": call.id,
                "gen_ai.tool.type": "function",
                "gen_ai.conversation.id": context.session_id,
                "lash.session.id": context.session_id,
                "lash.turn.id": spans.turn_id,
            },
        )

    @lash.hookimpl(trylast=True)
    def after_tool_call(
        self, call: lash.ToolCall, result: lash.ToolResult, context: lash.ToolContext
    ) -> None:
        spans = self._running.get(context.session_id)
        span = spans.tools.pop(call.id, None) if spans is not None else None
        if span is None:
            return
        if result.is_error:
            _fail(span, result.content, "tool_error")
        span.end()


def _fail(span: Span, description: str, error_type: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, description[:_DESCRIPTION]))


def _end_all(spans: _TurnSpans, why: str) -> None:
    for span in (*spans.tools.values(), spans.span):
        _fail(span, why, "not_completed")
        span.end()


def _qualname(error: BaseException) -> str:
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"


def _lash_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lash-sdk")
    except PackageNotFoundError:
        return None
