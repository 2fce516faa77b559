"""Scripted models for plugin tests: :class:`Script`, a provider plugin that plays responses.

A :class:`Script` wraps the builtin :class:`lash.ScriptedProvider` in a
plugin of its own, so a test passes it to a core like any other plugin and the builtin
``scripted`` plugin (which reads its script from host options) can stay disabled.

The testing kit is the one part of ``lash`` that imports a builtin: it is test tooling shipped
with lash, and the scripted provider is the model every plugin test needs. The kernel itself
still knows builtins only through their entry points.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

# The private modules, not the `lash` facade: the testing kit sits below the public faces
# (lash.testing re-exports it), and a lower layer never imports a higher one.
from lash._contract.providers import ModelRequest
from lash._contract.types import PluginMeta, RegisterProvider, Usage
from lash._plugins.markers import hookimpl
from lash._testing.scripted import ScriptedProvider, ScriptedResponse, ScriptedToolCall

__all__ = ["ResponseLike", "Script", "script"]

#: What a script accepts as one response: a :class:`ScriptedResponse`, a plain string (a text
#: reply), or a mapping shaped like a script-file entry (``{"text": ..., "tool_calls": [...]}``).
ResponseLike: TypeAlias = ScriptedResponse | str | Mapping[str, Any]

#: The name a :class:`Script` registers its provider (and names its plugin) under by default.
DEFAULT_NAME = "script"


def _usage(usage: Usage | Mapping[str, int] | None) -> Usage:
    if usage is None:
        return Usage()
    if isinstance(usage, Usage):
        return usage
    return Usage(**usage)


def _chunk_size(text: str, chunks: int | None) -> int | None:
    if chunks is None:
        return None
    if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1:
        raise ValueError(f"chunks must be a positive integer, got {chunks!r}")
    # Ceiling division: the text streams in at most `chunks` pieces of equal size.
    return max(1, -(-len(text) // chunks))


class Script:
    """A scripted model for tests: a provider plugin playing ``responses`` in order.

    Pass it to a core as a plugin (the :func:`lash_core <lash.testing.lash_core>` fixture does
    that for ``script=``) and select its provider by :attr:`name`; every model call plays the
    next response. Build responses with the static helpers :meth:`text`, :meth:`tool_call`,
    :meth:`tool_calls` and :meth:`error`, or write them as plain strings and mappings.

    Every request the model received is in :attr:`requests`; :meth:`assert_consumed` fails
    unless every response was played. One model call more than the script holds fails the turn
    with :class:`lash.ScriptExhausted`.
    """

    __module__ = "lash.testing"

    def __init__(self, responses: Iterable[ResponseLike] = (), *, name: str = DEFAULT_NAME) -> None:
        #: The provider name (and the plugin name) hosts select it by.
        self.name = name
        # An instance attribute, so two scripts with different names can share a core.
        self.lash_plugin = PluginMeta(
            name=name, description="A scripted model for tests (lash.testing.Script)."
        )
        #: The builtin scripted provider doing the playing.
        self.provider = ScriptedProvider(responses, name=name)

    # -- the plugin ---------------------------------------------------------------------------

    @hookimpl
    def register_providers(self, register: RegisterProvider) -> None:
        """Register the provider under :attr:`name`."""
        register(self.name, self.provider)

    # -- the script ---------------------------------------------------------------------------

    @property
    def requests(self) -> list[ModelRequest]:
        """Every request the model received, in order (failed and exhausted calls included)."""
        return self.provider.requests

    @property
    def responses(self) -> tuple[ScriptedResponse, ...]:
        """The whole script, played and unplayed."""
        return self.provider.script

    @property
    def consumed(self) -> int:
        """How many responses have been played."""
        return self.provider.consumed

    @property
    def remaining(self) -> int:
        """How many responses are left to play."""
        return self.provider.remaining

    def extend(self, responses: Iterable[ResponseLike]) -> None:
        """Append responses to the end of the script."""
        self.provider.extend(responses)

    def assert_consumed(self) -> None:
        """Fail unless every response was played.

        :raises AssertionError: listing each unplayed response (its position and a summary).
        """
        self.provider.assert_consumed()

    def __repr__(self) -> str:
        return f"<Script {self.name!r} consumed={self.consumed} remaining={self.remaining}>"

    # -- building responses ---------------------------------------------------------------------

    @staticmethod
    def text(
        text: str,
        /,
        *,
        chunks: int | None = None,
        usage: Usage | Mapping[str, int] | None = None,
        finish_reason: str | None = None,
        delay: float = 0.0,
    ) -> ScriptedResponse:
        """A text reply.

        :param chunks: stream the text in this many pieces of equal size (the last may be
            shorter; fewer when the text is too short); one piece when unset.
        :param usage: token usage of the call, a :class:`lash.Usage` or a mapping such as
            ``{"input_tokens": 10, "output_tokens": 3}``.
        :param finish_reason: the model's finish reason (``"stop"`` when unset).
        :param delay: seconds to wait before the first event (a slow model).
        """
        return ScriptedResponse(
            text=text,
            usage=_usage(usage),
            chunk_size=_chunk_size(text, chunks),
            finish_reason=finish_reason,
            delay=delay,
        )

    @staticmethod
    def call(name: str, /, id: str | None = None, **arguments: Any) -> ScriptedToolCall:
        """One tool call, for :meth:`tool_calls`: tool ``name`` with keyword ``arguments``.

        ``id`` defaults to ``call_<n>``, ``n`` counting the calls the script has played.
        """
        return ScriptedToolCall(name=name, arguments=arguments, id=id)

    @staticmethod
    def tool_call(name: str, /, id: str | None = None, **arguments: Any) -> ScriptedResponse:
        """A reply that calls tool ``name`` once, with keyword ``arguments``.

        ``id`` defaults to ``call_<n>``, ``n`` counting the calls the script has played. (A
        tool argument called ``id`` goes through :meth:`call` and :meth:`tool_calls`:
        ``Script.tool_calls(Script.call("t", **{"id": 1}))`` passes no call id.)
        """
        return ScriptedResponse(
            tool_calls=(ScriptedToolCall(name=name, arguments=arguments, id=id),)
        )

    @staticmethod
    def tool_calls(
        *calls: ScriptedToolCall,
        text: str = "",
        usage: Usage | Mapping[str, int] | None = None,
    ) -> ScriptedResponse:
        """A reply with ``text`` (optional) followed by several tool calls, built with
        :meth:`call`; the kernel runs them concurrently."""
        return ScriptedResponse(text=text, tool_calls=calls, usage=_usage(usage))

    @staticmethod
    def error(message: str, /, *, text: str = "") -> ScriptedResponse:
        """A failing model call: :class:`lash.ProviderError` with ``message``, after streaming
        ``text`` (a failure mid-stream); the turn fails."""
        return ScriptedResponse(text=text, error=message)


def script(*responses: ResponseLike, name: str = DEFAULT_NAME) -> Script:
    """A :class:`Script` playing ``responses`` in order::

        lash.testing.script("Hi!", Script.tool_call("greet", name="Ada"), "Done.")

    ``name`` is the name of its provider and plugin.
    """
    return Script(responses, name=name)
