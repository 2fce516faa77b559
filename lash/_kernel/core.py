"""``LashCore``: one host's composition of plugins, store and provider."""

from __future__ import annotations

import os
import socket
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from lash._plugins.arguments import check_core_arguments
from lash._plugins.composition import DEFAULT_MODEL, Composition, compose
from lash._plugins.dispatch import HookDispatcher, MonitorAfter, MonitorBefore
from lash._plugins.hostconfig import HostConfig
from lash._plugins.loading import Builtins, PluginInfo
from lash._plugins.registry import Registry
from lash._store.ids import check_session_id
from lash.errors import LashError

if TYPE_CHECKING:
    from lash._kernel.session import ParkedSession, Session
    from lash._store.protocol import Store

__all__ = ["DEFAULT_MODEL", "DEFAULT_STORE_PATH", "LashCore", "store_url"]

#: Where sessions are stored when no ``store`` is configured: an embedded SQLite file under the
#: project directory (the config file's directory, else the working directory).
DEFAULT_STORE_PATH = ".lash/lash.db"


def store_url(config: HostConfig) -> str:
    """The store URL a host with ``config`` uses: its ``store``, or the default embedded
    ``sqlite:///<project>/.lash/lash.db`` (project: the config file's directory, else the
    working directory)."""
    if config.store:
        return config.store
    project = Path(config.path).parent if config.path else Path.cwd()
    return f"sqlite:///{(project / DEFAULT_STORE_PATH).resolve()}?create_dirs=1"


class LashCore:
    """A host's plugin composition: its own plugin manager, registries and settings.

    Build one from config with :meth:`from_config`, or from explicit arguments::

        core = lash.LashCore(plugins=["standard", "scripted", my_plugin], builtins=())

    ``plugins`` is the allowlist and order: entry-point names or plugin objects (module, class or
    instance). ``builtins`` chooses the builtin plugins that load without being listed:
    ``"default"`` (all of them, unless disabled), a list of builtin names, or ``()`` (none: the
    core loads exactly ``plugins``); left unset, it is ``"default"`` when no allowlist is given
    and ``()`` when one is (an allowlist means what it says; the config key ``builtins`` sets it
    too). ``disable`` removes plugins by name (with ``LASH_DISABLE_PLUGINS`` and ``lash
    --disable``). Each core builds its own plugin composition: nothing is global, and nothing is
    discovered at import time.

    ``hook_timeout`` (seconds) bounds every awaited hook implementation: one that runs longer
    fails as a :class:`lash.PluginError` naming its plugin and hook (a synchronous hook that
    blocks cannot be interrupted: that is the plugin's bug).
    """

    __module__ = "lash"

    def __init__(
        self,
        plugins: Sequence[object | str] | None = None,
        *,
        builtins: Builtins = None,
        config: HostConfig | None = None,
        store: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        disable: Sequence[str] | None = None,
        autoload: bool | None = None,
        strict: bool | None = None,
        on_error: Callable[[LashError], None] | None = None,
        lease_ttl: float = 30.0,
        hook_timeout: float | None = None,
    ) -> None:
        check_core_arguments(locals())  # first: a bad argument must fail before it is used
        base = config if config is not None else HostConfig().with_env(os.environ)
        overrides: dict[str, Any] = {
            key: value
            for key, value in (
                ("store", store),
                ("provider", provider),
                ("model", model),
                ("autoload", autoload),
                ("strict", strict),
            )
            if value is not None
        }
        if options is not None:
            overrides["options"] = {**base.options, **options}
        if disable is not None:
            # HostConfig's converter turns it into a tuple (a bare string being one name).
            overrides["disable"] = (
                *base.disable,
                *((disable,) if isinstance(disable, str) else disable),
            )
        if builtins is not None:
            overrides["builtins"] = builtins
        self.config: HostConfig = attrs.evolve(base, **overrides) if overrides else base
        #: The plugins, assembled: what the kernel reads about plugins comes from here.
        self.composition: Composition = compose(
            self.config, explicit=plugins, on_error=on_error, hook_timeout=hook_timeout
        )
        #: Problems that did not stop the build (unused option sections...), for ``lash doctor``.
        self.warnings: list[str] = self.composition.warnings
        self._store: Store | None = None
        # Sessions handed out, so aclose() can release their leases; weak: a session the host
        # dropped must not be kept alive by the core.
        self._sessions: weakref.WeakSet[Session] = weakref.WeakSet()
        #: Seconds a session lease lasts; running turns renew it every third of that.
        self.lease_ttl = lease_ttl
        #: This core's identity as a lease owner (host, process, random suffix).
        self.owner_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    @classmethod
    def from_config(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        cwd: str | os.PathLike[str] | None = None,
        **overrides: Any,
    ) -> LashCore:
        """Build a core from ``lash.toml`` / ``[tool.lash]`` (see :meth:`HostConfig.load`);
        keyword ``overrides`` are passed to the constructor and win over the file."""
        config = HostConfig.load(path, cwd=cwd)
        return cls(config=config, **overrides)

    @property
    def hooks(self) -> HookDispatcher:
        """The core's hook dispatcher (``add_monitor`` observes every hook call)."""
        return self.composition.hooks

    def add_hook_monitor(self, before: MonitorBefore, after: MonitorAfter) -> Callable[[], None]:
        """Observe every hook implementation this core calls (tracing, debugging, tests).

        ``before(hook, plugin, kwargs)`` runs before each implementation with the arguments it
        is given; ``after(hook, plugin, kwargs, result, exception)`` after it, with what it
        returned (awaited, for async implementations) or raised, before lash checks the result.
        Returns a function that removes the monitor. Dispatch is unchanged, and costs nothing
        extra while no monitor is installed. A monitor that raises fails the hook call: keep
        monitors simple.
        """
        return self.composition.hooks.add_monitor(before, after)

    @property
    def registry(self) -> Registry:
        """Everything the plugins registered (tools, providers, the protocol, stores...)."""
        return self.composition.registry

    @property
    def plugins(self) -> list[PluginInfo]:
        """Every plugin lash considered, in order: loaded first, then failed and disabled ones."""
        return list(self.composition.infos)

    @property
    def plugin_names(self) -> list[str]:
        """Names of the loaded plugins, in dispatch order."""
        return self.composition.plugin_names

    def plugin_options(self, name: str) -> Any:
        """The host-level (config) options instance of plugin ``name`` (``None`` if it has none).

        :raises KeyError: when no plugin of that name is loaded.
        """
        return self.composition.plugin(name).options

    # -- sessions ----------------------------------------------------------------------------

    def session(
        self,
        session_id: str,
        *,
        options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Session:
        """A handle on session ``session_id``; ``options`` overrides plugin options by plugin name
        (validated at open). Call ``await session.open()`` or ``open_fresh()`` next.

        :raises SessionError: when ``session_id`` breaks the session id rule (see
            :func:`lash.store.check_session_id`)."""
        from lash._kernel.session import Session

        check_session_id(session_id)
        session = Session(self, session_id, options=options)
        self._sessions.add(session)
        return session

    async def resume(self, handle: ParkedSession, *, wait: float = 0.0) -> Session:
        """Reopen a session parked with :meth:`lash.Session.park`."""
        session = self.session(handle.session_id, options=handle.options)
        return await session.open(must_exist=True, wait=wait)

    async def delete_session(self, session_id: str) -> None:
        """Delete a session from the store.

        :raises UnknownSession: when there is none.
        :raises SessionBusy: while the session is open (here or in another process).
        """
        await self.store.delete(session_id)

    async def aclose(self) -> None:
        """Close the sessions still open (releasing their leases), then the store and the
        provider clients. ``async with core:`` does this on exit."""
        for session in list(self._sessions):
            await session.close()
        if self._store is not None:
            await self._store.close()
            self._store = None
        for contribution in self.registry.of("provider").values():
            closer = getattr(contribution.value, "aclose", None)
            if closer is not None:
                await closer()

    async def __aenter__(self) -> LashCore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def store_url(self) -> str:
        """The configured store URL, or the default ``sqlite:///<project>/.lash/lash.db`` where
        the project directory is the config file's directory (else the working directory)."""
        return store_url(self.config)

    @property
    def store(self) -> Store:
        """The store, built on first use from the configured URL (default: the embedded SQLite
        file ``.lash/lash.db`` under the project directory, see :attr:`store_url`)."""
        if self._store is None:
            url = self.store_url
            self._store = self.composition.store_factory(url)(url)
        return self._store

    def __repr__(self) -> str:
        return f"<LashCore plugins={self.plugin_names!r}>"
