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

from lash._contract.types import SessionConfig
from lash._plugins.arguments import check_core_arguments
from lash._plugins.dispatch import HookDispatcher
from lash._plugins.hostconfig import HostConfig
from lash._plugins.loading import LoadedPlugin, PluginInfo, load_plugins
from lash._plugins.options import is_secret
from lash._plugins.registry import Registry, run_registrations
from lash._store.ids import check_session_id
from lash.errors import LashError, ProtocolMissing, UnknownProvider, UnknownStore
from lash.hookspecs import SHAPES

if TYPE_CHECKING:
    from lash._contract.providers import Provider, ToolSpec
    from lash._kernel.session import ParkedSession, Session
    from lash._store.protocol import Store
    from lash._tools.tool import Tool

#: The store used when none is configured.
#: Where sessions are stored when no ``store`` is configured: an embedded SQLite file under the
#: project directory (the config file's directory, else the working directory).
DEFAULT_STORE_PATH = ".lash/lash.db"
#: The model name used when neither config nor session names one.
DEFAULT_MODEL = "default"

#: Exclusive hooks, checked when the core is built so a conflict fails early and names both plugins.
#: Read from the one table of shapes, so a new exclusive hook cannot be forgotten here.
_EXCLUSIVE_HOOKS = tuple(hook for hook, shape in SHAPES.items() if shape == "exclusive")


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

        core = lash.LashCore(plugins=["standard", "scripted", my_plugin], autoload=False)

    ``plugins`` is the allowlist and order: entry-point names or plugin objects (module, class or
    instance). Builtins not listed still load unless disabled. Each core builds its own pluggy
    manager: nothing is global, and nothing is discovered at import time.
    """

    __module__ = "lash"

    def __init__(
        self,
        plugins: Sequence[object | str] | None = None,
        *,
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
            overrides["disable"] = disable
        self.config: HostConfig = attrs.evolve(base, **overrides) if overrides else base
        result = load_plugins(self.config, explicit=plugins)
        self._loaded: list[LoadedPlugin] = result.loaded
        self._infos = result.infos
        #: Problems that did not stop the build (unused option sections...), for ``lash doctor``.
        self.warnings: list[str] = result.warnings
        self.hooks = HookDispatcher(result.pm, [p.name for p in result.loaded], on_error=on_error)
        self._pm = result.pm
        for hook in _EXCLUSIVE_HOOKS:
            self.hooks.exclusive_impl(hook)
        self.registry: Registry = run_registrations(self.hooks, self._loaded)
        self._options_owners = {
            p.info.meta.options: p.name for p in self._loaded if p.info.meta.options is not None
        }
        self._state_owners = {
            p.info.meta.state: p.name for p in self._loaded if p.info.meta.state is not None
        }
        self._store: Store | None = None
        # Sessions handed out, so aclose() can release their leases; weak: a session the host
        # dropped must not be kept alive by the core.
        self._sessions: weakref.WeakSet[Session] = weakref.WeakSet()
        #: Seconds a session lease lasts; running turns renew it every third of that.
        self.lease_ttl = lease_ttl
        #: This core's identity as a lease owner (host, process, random suffix).
        self.owner_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._specs: dict[str, ToolSpec] = {}
        self._tool_table: dict[str, tuple[str, str]] | None = None
        self._protocol_obj: Any = None

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
    def plugins(self) -> list[PluginInfo]:
        """Every plugin lash considered, in order: loaded first, then failed and disabled ones."""
        return list(self._infos)

    @property
    def plugin_names(self) -> list[str]:
        """Names of the loaded plugins, in dispatch order."""
        return [p.name for p in self._loaded]

    def plugin_options(self, name: str) -> Any:
        """The host-level (config) options instance of plugin ``name`` (``None`` if it has none).

        :raises KeyError: when no plugin of that name is loaded.
        """
        for plugin in self._loaded:
            if plugin.name == name:
                return plugin.options
        raise KeyError(name)

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
            :func:`lash.check_session_id`)."""
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
            scheme = url.split(":", 1)[0]
            contribution = self.registry.of("store").get(scheme)
            if contribution is None:
                known = ", ".join(sorted(self.registry.of("store"))) or "none"
                raise UnknownStore(
                    f"no plugin provides a store for {scheme!r} URLs ({url!r}); "
                    f"known schemes: {known}"
                )
            self._store = contribution.value(url)
        return self._store

    # -- kernel internals --------------------------------------------------------------------

    @property
    def _protocol(self) -> Any:
        if self._protocol_obj is None:
            protocols = self.registry.of("protocol")
            if not protocols:
                raise ProtocolMissing(
                    "no enabled plugin registers the turn protocol; enable the builtin "
                    "'standard' plugin (or another protocol plugin)"
                )
            self._protocol_obj = next(iter(protocols.values())).value
        return self._protocol_obj

    def _loaded_plugins(self) -> list[LoadedPlugin]:
        return self._loaded

    def _options_owner(self, cls: type) -> str:
        try:
            return self._options_owners[cls]
        except KeyError:
            raise KeyError(f"no enabled plugin declares options class {cls.__qualname__}") from None

    def _state_owner(self, cls: type) -> str:
        try:
            return self._state_owners[cls]
        except KeyError:
            raise KeyError(f"no enabled plugin declares state class {cls.__qualname__}") from None

    def _tool(self, name: str) -> Tool:
        tool: Tool = self.registry.of("tool")[name].value
        return tool

    def _tool_spec(self, name: str) -> ToolSpec:
        spec = self._specs.get(name)
        if spec is None:
            spec = self._specs[name] = self._tool(name).spec()
        return spec

    def _has_tool(self, name: str) -> bool:
        return name in self.registry.of("tool")

    def _tool_plugin(self, name: str) -> str | None:
        contribution = self.registry.of("tool").get(name)
        return contribution.plugin if contribution is not None else None

    def _available_tools(self) -> dict[str, tuple[str, str]]:
        """Every registered tool: name -> (plugin, description). Fixed per core, so cached."""
        if self._tool_table is None:
            self._tool_table = {
                c.name: (c.plugin, c.description) for c in self.registry.of("tool").values()
            }
        return self._tool_table

    def _secret_option_fields(self, plugin: str) -> frozenset[str]:
        """Names of the option fields of ``plugin`` declared with ``option(secret=True)``."""
        for loaded in self._loaded:
            if loaded.name == plugin and loaded.info.meta.options is not None:
                return frozenset(
                    f.name for f in attrs.fields(loaded.info.meta.options) if is_secret(f)
                )
        return frozenset()

    def _provider_for(self, config: SessionConfig) -> tuple[str, Provider, str]:
        providers = self.registry.of("provider")
        name = config.provider or self.config.provider
        if name is None:
            if len(providers) != 1:
                known = ", ".join(sorted(providers)) or "none"
                raise UnknownProvider(
                    f"no provider configured and {len(providers)} are registered ({known}); "
                    'set `provider = "..."` in lash.toml, pass provider= to LashCore, '
                    "or use `lash run --provider NAME`"
                )
            name = next(iter(providers))
        contribution = providers.get(name)
        if contribution is None:
            known = ", ".join(sorted(providers)) or "none"
            raise UnknownProvider(f"unknown provider {name!r}; registered providers: {known}")
        model = config.model or self.config.model or DEFAULT_MODEL
        return name, contribution.value, model

    def __repr__(self) -> str:
        return f"<LashCore plugins={self.plugin_names!r}>"
