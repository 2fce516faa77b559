"""Plain data that hooks receive and return, and the registrars of the ``register_*`` hooks.

These are the nouns of the hook contract in :mod:`lash.hookspecs`. Records that are persisted or
travel between plugins are frozen attrs classes. The services through which plugins reach a
session (``SessionView`` and friends) are in :mod:`lash._contract.services`.

This module holds what loading a plugin needs (:class:`lash.PluginMeta`, the registrars, and the
tool calls and results that tools are typed with). The data only turns, sessions and processes
use (prompt messages, directives, prompt views, session configs, process records...) is in
:mod:`lash._contract.turn_types`, so that ``lash --help`` and ``lash plugins``, which load every
plugin, do not build those classes.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import attrs

from lash._contract.annotations import resolve_here
from lash._contract.slots import maker

__all__ = [
    "NO_USAGE",
    "PluginMeta",
    "RecoveryDisposition",
    "RegisterCommand",
    "RegisterProcessKind",
    "RegisterProtocol",
    "RegisterProvider",
    "RegisterSessionCommand",
    "RegisterStore",
    "RegisterTool",
    "ToolCall",
    "ToolResult",
    "ToolSpec",
    "Usage",
]


# --------------------------------------------------------------------------------------------
# Plugin declaration
# --------------------------------------------------------------------------------------------


def _names(value: object) -> tuple[str, ...]:
    # Accept one name or any iterable of names; a bare string is one name, not its characters.
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)  # type: ignore[attr-defined]


@attrs.frozen
class PluginMeta:
    """What a plugin declares about itself, beside its hook implementations.

    A plugin exposes it as the attribute ``lash_plugin`` (module global or class attribute)::

        lash_plugin = lash.PluginMeta(options=Options, state=State, after=("files",))

    ``options`` is an attrs class of per-session options (host config ``[options.<name>]`` gives
    the defaults, ``core.session(id, options=...)`` overrides them); ``state`` is an attrs class of
    per-session state that the kernel snapshots inside every turn commit. ``before``/``after``
    refine the configured order; ``requires`` names plugins that must be enabled too. An
    ``opt_in`` plugin loads only when named in the ``plugins`` allowlist (or passed to
    :class:`lash.LashCore` explicitly), never just because it is installed: use it for plugins
    that grant powers a host must choose, like file access.
    """

    name: str | None = None
    description: str | None = None
    options: type | None = None
    state: type | None = None
    before: tuple[str, ...] = attrs.field(default=(), converter=_names)
    after: tuple[str, ...] = attrs.field(default=(), converter=_names)
    requires: tuple[str, ...] = attrs.field(default=(), converter=_names)
    opt_in: bool = False

    __module__ = "lash"


# --------------------------------------------------------------------------------------------
# Tool calls, usage
# --------------------------------------------------------------------------------------------


@attrs.frozen
class Usage:
    """Token usage of one model call (or a sum of them)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0

    __module__ = "lash"

    def __add__(self, other: Usage) -> Usage:
        # Frozen: a sum with nothing is the other amount itself, no new object (a turn adds
        # its model call's usage to none, a store the first amount of a source to none).
        if type(self) is Usage and type(other) is Usage:
            if not (other.input_tokens or other.output_tokens or other.cached_tokens):
                return self
            if not (self.input_tokens or self.output_tokens or self.cached_tokens):
                return other
        return _make_usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


#: No tokens: one shared instance (Usage is frozen) for the kernel's zero amounts.
NO_USAGE = Usage()
#: Usage's maker (its __init__ as slot stores): a turn's sums make a few.
_make_usage = maker(Usage)


@attrs.frozen
class ToolCall:
    """A tool call the model asked for: ``id`` is the provider's call id.

    ``invalid_arguments`` holds the raw argument text when the model sent something that is not
    a JSON object; the kernel then answers with an error result instead of calling the tool.
    """

    id: str
    name: str
    arguments: Mapping[str, Any] = attrs.field(factory=dict)
    invalid_arguments: str | None = None

    __module__ = "lash"


@attrs.frozen
class ToolSpec:
    """A tool as a model sees it: name, description and JSON schema of its arguments (what
    :class:`lash.ModelRequest` offers a model)."""

    name: str
    description: str
    parameters: Mapping[str, Any]

    __module__ = "lash"


@attrs.frozen
class ToolResult:
    """The result of one tool call; ``is_error`` marks a failure reported to the model."""

    call_id: str
    content: str
    is_error: bool = False

    __module__ = "lash"


class RecoveryDisposition(enum.Enum):
    """What happens to a background process whose worker died (its claim expired).

    ``RERUNNABLE`` processes are run again, by any worker, up to their ``max_attempts`` (so their
    side effects may repeat: at-least-once); ``OWNER_BOUND`` ones are never run twice: they end
    ``abandoned``; ``EXTERNALLY_OWNED`` ones are left ``running`` until the system that owns
    them calls ``complete``.
    """

    RERUNNABLE = "rerunnable"
    OWNER_BOUND = "owner_bound"
    EXTERNALLY_OWNED = "externally_owned"

    __module__ = "lash"


# --------------------------------------------------------------------------------------------
# Registrars passed to register_* hooks
# --------------------------------------------------------------------------------------------


class RegisterTool(Protocol):
    """``register(fn_or_tool, *, name=None, description=None)`` inside ``register_tools``."""

    def __call__(
        self, tool: Any, /, *, name: str | None = None, description: str | None = None
    ) -> None: ...


class RegisterProvider(Protocol):
    """``register(name, provider)`` inside ``register_providers``."""

    def __call__(self, name: str, provider: Any, /) -> None: ...


class RegisterProtocol(Protocol):
    """``register(name, protocol)`` inside ``register_protocol``."""

    def __call__(self, name: str, protocol: Any, /) -> None: ...


class RegisterProcessKind(Protocol):
    """``register(kind, run, *, recovery, timeout, max_attempts)`` inside
    ``register_process_kinds``; ``run(context, payload)`` is ``async``."""

    def __call__(
        self,
        kind: str,
        run: Callable[..., Awaitable[Any]],
        /,
        *,
        recovery: RecoveryDisposition = RecoveryDisposition.OWNER_BOUND,
        timeout: float | None = None,
        max_attempts: int = 3,
    ) -> None: ...


class RegisterStore(Protocol):
    """``register(scheme, factory)`` inside ``register_stores``; ``factory(url)`` builds a store."""

    def __call__(self, scheme: str, factory: Callable[[str], Any], /) -> None: ...


class RegisterSessionCommand(Protocol):
    """``register(name, apply)`` inside ``register_session_commands``;
    ``apply(session, args)`` applies one queued command (sync or ``async``)."""

    def __call__(self, name: str, apply: Callable[..., Any], /) -> None: ...


class RegisterCommand(Protocol):
    """``register(command)`` inside ``register_commands``: a :class:`click.Command` (or group),
    added to the ``lash`` command line under its own name."""

    def __call__(self, command: Any, /) -> None: ...


# Protocol classes cannot set __module__ in their body (it would become a protocol member).
RegisterTool.__module__ = "lash"
RegisterProvider.__module__ = "lash"
RegisterProtocol.__module__ = "lash"
RegisterProcessKind.__module__ = "lash"
RegisterStore.__module__ = "lash"
RegisterCommand.__module__ = "lash"
RegisterSessionCommand.__module__ = "lash"


resolve_here(globals())
