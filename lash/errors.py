"""The lash error tree.

Every error lash raises derives from :class:`LashError`. Leaves carry their context as attributes
(``plugin``, ``hook``, ``session_id``, ``field``...) so hosts can react programmatically, and their
messages say what happened, where, and what to do.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

__all__ = [
    "ConfigError",
    "ConfigRejected",
    "ExclusiveHookConflict",
    "ImageError",
    "InputConflict",
    "LashError",
    "LeaseLost",
    "ModelNotFound",
    "OperationError",
    "OptionsError",
    "OutputInvalid",
    "PluginError",
    "PluginLoadError",
    "PluginOrderError",
    "ProcessError",
    "ProtocolMissing",
    "ProviderAuthError",
    "ProviderError",
    "ProviderRequestError",
    "RateLimited",
    "RevisionConflict",
    "ScriptExhausted",
    "SessionBusy",
    "SessionError",
    "UnknownHookError",
    "UnknownProcess",
    "UnknownProvider",
    "UnknownSession",
    "UnknownStore",
    "ValidationError",
]


class LashError(Exception):
    """Root of every error raised by lash."""

    __module__ = "lash"


class ConfigError(LashError, ValueError):
    """The host configuration cannot be used.

    ``path``, ``line`` and ``column`` locate the problem when it comes from a file.
    """

    __module__ = "lash"

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        where = ""
        if path is not None:
            where = path
            if line is not None:
                where += f":{line}"
                if column is not None:
                    where += f":{column}"
            where += ": "
        super().__init__(where + message)


class OptionsError(ConfigError):
    """Options for a plugin (or the host) do not fit the declared attrs class.

    ``problems`` holds one readable line per bad field: plugin, dotted field path, expected type and
    the value received. ``plugin`` names the plugin whose options were rejected.
    """

    __module__ = "lash"

    def __init__(self, plugin: str, problems: Sequence[str], *, path: str | None = None) -> None:
        self.plugin = plugin
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid options for plugin {plugin!r}:\n{lines}", path=path)


class OutputInvalid(LashError):
    """A structured-output turn's answer kept failing validation (``session.turn(text,
    output=...)``): the model was shown the errors and asked again ``attempts - 1`` times.

    ``errors`` holds one line per problem of the last answer (``$.age: 'x' is not of type
    'integer'``); ``session_id`` and ``turn_id`` say where. The turn ends ``failed`` with this
    message and the errors in its result's ``output_errors``.
    """

    __module__ = "lash"

    def __init__(
        self, errors: Sequence[str], *, attempts: int, session_id: str, turn_id: str
    ) -> None:
        self.errors = tuple(errors)
        self.attempts = attempts
        self.session_id = session_id
        self.turn_id = turn_id
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(
            f"session {session_id!r}, turn {turn_id!r}: the model's structured output was still "
            f"invalid after {attempts} attempt(s):\n{lines}"
        )


class PluginError(LashError):
    """A plugin failed inside a hook, or broke the hook contract.

    ``plugin`` names the plugin and ``hook`` the hook; the original exception is chained as
    ``__cause__``.
    """

    __module__ = "lash"

    def __init__(self, message: str, *, plugin: str | None, hook: str | None) -> None:
        self.plugin = plugin
        self.hook = hook
        super().__init__(message)


class PluginLoadError(PluginError):
    """A plugin could not be loaded (import failure, bad declaration, unknown hook...).

    Outside strict mode the plugin is recorded as failed and skipped; in strict mode this is raised
    when the core is built.
    """

    __module__ = "lash"

    def __init__(
        self,
        message: str,
        *,
        plugin: str,
        hook: str | None = None,
        distribution: str | None = None,
        version: str | None = None,
    ) -> None:
        self.distribution = distribution
        self.version = version
        super().__init__(message, plugin=plugin, hook=hook)


class UnknownHookError(PluginLoadError):
    """A plugin implements a hook name that is not in the contract (often a typo).

    ``suggestion`` holds the closest known hook name, if any.
    """

    __module__ = "lash"

    def __init__(
        self,
        message: str,
        *,
        plugin: str,
        hook: str,
        suggestion: str | None,
        distribution: str | None = None,
        version: str | None = None,
    ) -> None:
        self.suggestion = suggestion
        super().__init__(
            message, plugin=plugin, hook=hook, distribution=distribution, version=version
        )


class PluginOrderError(PluginLoadError):
    """Plugin ordering cannot be satisfied: a ``before``/``after`` cycle or a missing ``requires``.

    ``plugins`` names every plugin involved.
    """

    __module__ = "lash"

    def __init__(self, message: str, *, plugin: str, plugins: Sequence[str]) -> None:
        self.plugins = tuple(plugins)
        super().__init__(message, plugin=plugin)


class ExclusiveHookConflict(PluginError):
    """Two plugins implement an exclusive hook (at most one implementation is allowed).

    ``plugins`` names both.
    """

    __module__ = "lash"

    def __init__(self, hook: str, plugins: Sequence[str]) -> None:
        self.plugins = tuple(plugins)
        names = " and ".join(repr(p) for p in self.plugins)
        super().__init__(
            f"hook {hook!r} is exclusive but both {names} implement it; "
            "disable one of them (config `disable = [...]`)",
            plugin=self.plugins[-1] if self.plugins else None,
            hook=hook,
        )


class ConfigRejected(LashError):
    """A plugin rejected a session configuration change (raised from ``mutate_session_config``).

    Plugins raise it with a ``reason``; the kernel fills in ``plugin`` before it reaches the host.
    """

    __module__ = "lash"

    def __init__(self, reason: str, *, plugin: str | None = None) -> None:
        self.reason = reason
        self.plugin = plugin
        super().__init__(reason)

    def __str__(self) -> str:
        who = f"plugin {self.plugin!r}" if self.plugin else "a plugin"
        return f"{who} rejected the configuration change: {self.reason}"


class ProviderError(LashError):
    """A model provider failed. ``provider`` names it; ``status`` is the HTTP status if any.

    Subclasses say what to fix; the kernel turns a provider error into a ``failed`` turn.
    """

    __module__ = "lash"

    def __init__(self, message: str, *, provider: str, status: int | None = None) -> None:
        self.provider = provider
        self.status = status
        super().__init__(message)


class ProviderAuthError(ProviderError):
    """The provider refused the credentials (HTTP 401/403): check the API key."""

    __module__ = "lash"


class ModelNotFound(ProviderError):
    """The provider does not know the model or endpoint (HTTP 404): check model and base URL."""

    __module__ = "lash"


class ProviderRequestError(ProviderError):
    """The provider rejected the request as malformed (HTTP 400/422)."""

    __module__ = "lash"


class RateLimited(ProviderError):
    """The provider kept answering 429 after every retry."""

    __module__ = "lash"


class ScriptExhausted(ProviderError):
    """The scripted provider was asked for more responses than its script holds."""

    __module__ = "lash"


class SessionError(LashError):
    """Something is wrong with one session; ``session_id`` names it."""

    __module__ = "lash"

    def __init__(self, message: str, *, session_id: str | None = None) -> None:
        self.session_id = session_id
        super().__init__(message)


class UnknownSession(SessionError, KeyError):
    """No session with that id exists in the store."""

    __module__ = "lash"

    def __init__(self, session_id: str) -> None:
        super().__init__(
            f"no session {session_id!r} in the store (use open_fresh() to create one, or "
            "`lash sessions list` to see what exists)",
            session_id=session_id,
        )

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class RevisionConflict(SessionError):
    """A commit expected head revision ``expected`` but the store is at ``actual``: another writer
    committed in between. Nothing was written; the handle reloads the session before its next
    operation: retry."""

    __module__ = "lash"

    def __init__(self, session_id: str, *, expected: int, actual: int) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"session {session_id!r}: commit expected head revision {expected} but the store is "
            f"at {actual} (another writer committed); nothing was written: retry (the session is "
            "reloaded first)",
            session_id=session_id,
        )


class UnknownStore(ConfigError):
    """No plugin registers a store for the URL's scheme."""

    __module__ = "lash"


class UnknownProvider(ConfigError):
    """No plugin registers the configured provider name."""

    __module__ = "lash"


class ProtocolMissing(ConfigError):
    """No enabled plugin registers the turn protocol (``register_protocol`` is required)."""

    __module__ = "lash"


class SessionBusy(SessionError):
    """Another execution held the session's lease for longer than this one may wait (the core's
    ``lease_wait``, or ``open(wait=...)``); ``owner`` names the holder, ``expires_at`` says until
    when its lease runs (epoch seconds), ``token`` is its fencing token. Nothing ran; try again,
    or wait longer."""

    __module__ = "lash"

    def __init__(
        self, session_id: str, *, owner: str, expires_at: float, token: int | None = None
    ) -> None:
        self.owner = owner
        self.expires_at = expires_at
        #: The holder's fencing token (``None`` when the store did not say).
        self.token = token
        super().__init__(
            f"session {session_id!r} is busy: its lease is held by {owner!r} "
            f"({_lease_left(expires_at)}); wait for it (the core's lease_wait, or wait=<seconds>)",
            session_id=session_id,
        )


def _lease_left(expires_at: float) -> str:
    """How long a lease that ends at ``expires_at`` lasts, for a message: rounded up, so that
    "for up to" stays true (tenths below 10 s, whole seconds above), and "about to expire"
    below a tenth of a second rather than "for up to 0.0 s more"."""
    left = expires_at - time.time()
    if left < 0.1:
        return "about to expire"
    if left < 10:
        return f"for up to {math.ceil(left * 10) / 10:.1f} s more"
    return f"for up to {math.ceil(left)} s more"


class LeaseLost(SessionError):
    """This execution no longer holds the session's lease (it was released, or taken over after
    it expired), so it cannot commit; nothing it tried to write is visible. The handle's next
    execution reloads the session from the store (reopening it works too)."""

    __module__ = "lash"

    def __init__(self, session_id: str, detail: str) -> None:
        super().__init__(
            f"session {session_id!r}: lease lost ({detail}); nothing was written: retry (the "
            "session is reloaded first)",
            session_id=session_id,
        )


class InputConflict(SessionError):
    """An idempotency key was used again with other content: ``key`` names it, ``existing_id``
    is the input (or command) already queued under it. Nothing was queued; use a new key, or
    the same content."""

    __module__ = "lash"

    def __init__(self, session_id: str, key: str, existing_id: str, what: str = "input") -> None:
        self.key = key
        self.existing_id = existing_id
        super().__init__(
            f"session {session_id!r}: key {key!r} was already used for {what} {existing_id!r} "
            "with other content; nothing was queued (use a new key, or send the same content)",
            session_id=session_id,
        )


class ImageError(LashError, ValueError):
    """An image given with a turn's input cannot be used: its file does not exist, it is too
    large, or it is not a PNG, JPEG, GIF or WebP image. ``item`` names it (``"items[0]"``);
    ``session_id`` the session, once known. Nothing was run or stored."""

    __module__ = "lash"

    def __init__(
        self, message: str, *, item: str | None = None, session_id: str | None = None
    ) -> None:
        self.item = item
        self.session_id = session_id
        super().__init__(message)


class ProcessError(LashError):
    """Something is wrong with a background process: ``process_id`` names it (``None`` before it
    exists), ``kind`` its kind (an unknown kind, a payload that does not fit it...)."""

    __module__ = "lash"

    def __init__(
        self, message: str, *, process_id: str | None = None, kind: str | None = None
    ) -> None:
        self.process_id = process_id
        self.kind = kind
        super().__init__(message)


class UnknownProcess(ProcessError, KeyError):
    """No process with that id exists in the store."""

    __module__ = "lash"

    def __init__(self, process_id: str) -> None:
        super().__init__(
            f"no process {process_id!r} in the store (`lash processes list` shows what exists)",
            process_id=process_id,
        )

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class ValidationError(LashError, ValueError):
    """Data does not fit a type; ``problems`` holds one readable line per bad field."""

    __module__ = "lash"

    def __init__(self, what: str, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid {what}:\n{lines}")


class OperationError(LashError):
    """A plugin operation could not be called, or failed: an unknown name, arguments that do
    not fit its args class, a session given against its session rule, or an exception raised by
    the operation. ``plugin``, ``operation``, ``field`` (the first bad argument) and
    ``session_id`` say where, when known."""

    __module__ = "lash"

    def __init__(
        self,
        message: str,
        *,
        operation: str | None = None,
        plugin: str | None = None,
        field: str | None = None,
        session_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.operation = operation
        self.plugin = plugin
        self.field = field
        self.session_id = session_id
