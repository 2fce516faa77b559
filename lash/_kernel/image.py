"""A session's image in memory: the committed head, plus what the running operation changed.

The image is a cache of the store: it is built from a :class:`~lash.store.SessionRecord`
(:meth:`SessionImage.load`), an operation changes it as it goes (the turn appends nodes, hooks
change plugin state), and :meth:`SessionImage.delta` turns what changed into the
:class:`~lash.store.CommitDelta` of one atomic commit. When the store accepts the commit the image
is at the new revision (:meth:`SessionImage.committed`); when a commit fails, the image no longer
says what the store holds and is marked ``stale``, so the next operation reloads it first (memory
never drifts from the store).
"""

from __future__ import annotations

import functools
import marshal
import operator
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from lash._contract.graph import GraphNode, SessionGraph
from lash._contract.modeloptions import EMPTY as NO_MODEL_OPTIONS
from lash._contract.serialization import structure, unstructure, validation_problems
from lash._contract.slots import maker
from lash._contract.turn_types import SessionConfig
from lash._contract.types import NO_USAGE, Usage
from lash._kernel.state import KERNEL_STATE_KEY, KernelState
from lash._plugins.options import build_options
from lash._store.records import (
    CommitDelta,
    EventDraft,
    InputDraft,
    ProcessDraft,
    SessionRecord,
    TurnRecord,
)
from lash.errors import SessionError

if TYPE_CHECKING:
    from lash._plugins.composition import Composition

#: Where protocol options of sessions written by lash 0.1 land when their config is read (the
#: plugin name ``lash`` is reserved, so no plugin's options can be there); the kernel moves them
#: into the protocol plugin's options at load. See :func:`migrate_protocol_options`.
LEGACY_PROTOCOL_OPTIONS = "lash"


@attrs.define(slots=True)
class SessionImage:
    """What one session handle holds of its session (see the module docstring)."""

    session_id: str
    graph: SessionGraph = attrs.field(factory=SessionGraph)
    revision: int = 0
    turns: int = 0
    config: SessionConfig = attrs.field(factory=SessionConfig)
    #: The config changed since the last commit (or was never committed).
    config_dirty: bool = False
    #: The next commit starts the session over (``open_fresh``).
    fresh: bool = False
    options: dict[str, Any] = attrs.field(factory=dict)
    states: dict[str, Any] = attrs.field(factory=dict)
    #: Each state as last committed (its :func:`fingerprint`), to commit only the states that
    #: changed.
    snapshots: dict[str, Any] = attrs.field(factory=dict)
    #: Every state's fields as last committed (:func:`plain_key`), when they are plain data:
    #: states with the same key are the same, without unstructuring them (see :meth:`delta`).
    states_key: str | None = None
    # The key :meth:`delta` saw (the committed one once that commits).
    _delta_key: str | None = attrs.field(default=None, init=False, repr=False)
    usage: dict[str, Usage] = attrs.field(factory=dict)
    #: A commit failed: the image no longer says what the store holds.
    stale: bool = False
    #: Messages of a migration applied at load, reported once the open succeeds.
    migrated: tuple[str, ...] = ()

    @property
    def kernel(self) -> KernelState:
        state: KernelState = self.states[KERNEL_STATE_KEY]
        return state

    # -- loading ------------------------------------------------------------------------------

    def load(
        self,
        record: SessionRecord | None,
        composition: Composition,
        overrides: Mapping[str, Mapping[str, Any]],
        *,
        fresh: bool,
        initial: SessionConfig | None = None,
    ) -> None:
        """Rebuild the image from ``record`` (``None``, or ``fresh``: an empty session that the
        next commit creates, replacing whatever the store holds), a new session starting from
        the configuration ``initial`` (default: the host's provider and model)."""
        base = record if record is not None and not fresh else None
        # The graph first, whole, before anything here changes: building a stored node may
        # raise (a field only its build checks), and a stale image whose reload fails must stay
        # stale, with what it held (the next operation reloads again), not be left current.
        graph = SessionGraph()
        if base is not None:
            graph.extend(base.nodes)
        self.migrated = ()
        if base is not None:
            config, migrated = migrate_protocol_options(base.config, composition)
            self.migrated = tuple(migrated)
        elif initial is not None:
            config = initial
        else:
            config = new_session_config(composition.config.provider, composition.config.model)
        self.options = build_session_options(self.session_id, composition, overrides, config)
        saved = base.plugin_states if base is not None else {}
        declared: list[tuple[str, type]] = [(KERNEL_STATE_KEY, KernelState)]
        declared += [(p.name, p.info.meta.state) for p in composition.loaded if p.info.meta.state]
        self.states = {}
        self.snapshots = {}
        self.states_key = None
        # States saved for plugins that are not enabled now are left untouched in the store
        # (commits only write states that changed), ready for when the plugin returns.
        for name, cls in declared:
            if name in saved:
                try:
                    self.states[name] = structure(saved[name], cls)
                except Exception as exc:
                    problems = validation_problems(exc, saved[name], f"state.{name}")
                    raise SessionError(
                        f"session {self.session_id!r}: saved state of plugin {name!r} no longer "
                        f"fits its state class: {'; '.join(problems) or exc}",
                        session_id=self.session_id,
                    ) from None
                self.snapshots[name] = fingerprint(saved[name])
            else:
                self.states[name] = cls()
        self.graph = graph
        self.config = config
        self.stale = False
        self.fresh = fresh
        if base is not None:
            self.revision = base.revision
            self.turns = base.turns
            self.usage = dict(base.usage)
            self.config_dirty = bool(self.migrated)
        else:
            # A fresh start replaces the stored session at the revision it read.
            self.revision = record.revision if record is not None else 0
            self.turns = 0
            self.usage = {}
            self.config_dirty = True
        # Record which plugin provides each tool now (committed with the next commit), so a
        # tool whose plugin later goes away is still known, as an orphan.
        available = composition.available_tools()
        self.kernel.refresh({name: plugin for name, (plugin, _) in available.items()})

    def clear(self) -> None:
        """Let go of the session's memory (graph, options, state): what parking leaves."""
        self.graph = SessionGraph()
        self.states = {}
        self.snapshots = {}
        self.states_key = None
        self.options = {}

    # -- committing ---------------------------------------------------------------------------

    def delta(
        self,
        nodes: Sequence[GraphNode],
        usage: Mapping[str, Usage],
        turns: int,
        composition: Composition,
        *,
        claimed: tuple[str, ...] = (),
        applied: tuple[str, ...] = (),
        enqueue: tuple[InputDraft, ...] = (),
        turn: TurnRecord | None = None,
        events: tuple[EventDraft, ...] = (),
        processes: tuple[ProcessDraft, ...] = (),
        parent_id: str | None = None,
        rollup: Mapping[str, Mapping[str, Usage]] | None = None,
        release: bool = False,
    ) -> CommitDelta:
        """Everything that changed since the last commit, as one commit's delta (the keyword
        arguments: the delta's other fields, settled claims, events..., as CommitDelta has
        them)."""
        states: dict[str, Any] = {}
        key = self._delta_key = plain_key(self.states)
        if key is None or key != self.states_key:  # (the same key: no state changed)
            for plugin, state in self.states.items():
                snapshot = unstructure(state)
                if self.snapshots.get(plugin) != fingerprint(snapshot):
                    states[plugin] = snapshot
        # Positional, in CommitDelta's order (every commit: a call by keyword cost ~1 us more).
        return _delta(
            tuple(nodes),
            states,
            self.persistable_config(composition) if self.config_dirty else None,
            {k: v for k, v in usage.items() if v != NO_USAGE},
            turns,
            self.fresh,
            claimed,
            applied,
            enqueue,
            turn,
            events,
            processes,
            parent_id,
            {} if rollup is None else rollup,
            release,
        )

    def committed(self, delta: CommitDelta, revision: int) -> None:
        """The store accepted ``delta`` as ``revision``: the image is at that head now."""
        self.revision = revision
        self.turns += delta.turns
        self.fresh = False
        self.config_dirty = False
        for plugin, snapshot in delta.plugin_states.items():
            self.snapshots[plugin] = fingerprint(snapshot)
        # (The key delta() took as it compared the states: the committed states'.)
        self.states_key = self._delta_key
        for source, amount in delta.usage.items():
            self.usage[source] = self.usage.get(source, NO_USAGE) + amount

    def persistable_config(self, composition: Composition) -> SessionConfig:
        """The config as stored: option fields marked secret are dropped (secrets are never
        persisted; they come back from host config or the environment at open)."""
        config = self.config
        if not config.plugin_options:
            return config
        stripped: dict[str, dict[str, Any]] = {}
        for plugin, values in config.plugin_options.items():
            secret = composition.secret_fields(plugin)
            stripped[plugin] = {k: v for k, v in values.items() if k not in secret}
        return attrs.evolve(config, plugin_options=stripped)

    def usage_report(self) -> dict[str, Any]:
        """Committed token usage: ``{"total": {...}, "by_source": {source: {...}}}``."""
        total = Usage()
        for usage in self.usage.values():
            total = total + usage
        return {
            "total": unstructure(total),
            "by_source": {k: unstructure(v) for k, v in sorted(self.usage.items())},
        }


#: A commit's delta (by its maker: every commit makes one).
_delta = maker(CommitDelta)


@functools.lru_cache(maxsize=16)
def new_session_config(provider: str | None, model: str | None) -> SessionConfig:
    """The config a new session starts with: the host's provider and model. One frozen object
    shared by every new session of a host (with the shared empty ModelOptions), not one each."""
    return SessionConfig(provider=provider, model=model, model_options=NO_MODEL_OPTIONS)


def fingerprint(snapshot: Any) -> Any:
    """What the image keeps of a state as committed (``snapshot``: the state unstructured), to
    tell whether it changed since: its ``marshal`` encoding (version 2), as an interned string.

    The encoding is a fraction of the size of the dicts and lists it encodes (the kernel's own
    state: ~200 bytes instead of ~700, kept by every open session), and interning shares it
    between the sessions whose state is the same (idle sessions of one host mostly are); both
    cost well under a microsecond. Version 2 writes no back-references and no interning flags,
    so equal data in the same order always encodes alike, and different data never does (the
    encoding decodes back to it; latin-1 maps each byte to one character): a changed state is
    never missed. Equal data that encodes differently (``1`` and ``True``, a dict in another
    order) only commits a state that did not change. Data ``marshal`` cannot encode is kept as
    it is (compared with ``==``).
    """
    try:
        return sys.intern(marshal.dumps(snapshot, 2).decode("latin-1"))
    except ValueError:  # an object marshal does not know: compared as it is
        return snapshot


@functools.cache
def _fields_of(cls: type) -> Any:
    """A function returning the tuple of an attrs instance's field values (``cls``'s fields)."""
    names = [a.name for a in attrs.fields(cls)]
    if not names:  # (attrgetter() takes one name at least)
        return lambda state: ()
    getter = operator.attrgetter(*names)
    return getter if len(names) > 1 else lambda state: (getter(state),)


def plain_key(states: Mapping[str, Any]) -> str | None:
    """The states' field values (by plugin), encoded as :func:`fingerprint` encodes a
    snapshot, when they are all plain data (``None``, bools, numbers, strings, and lists,
    tuples, dicts and sets of them: what ``marshal`` writes); ``None`` when a value is anything
    else (an attrs instance in a list, say).

    States with the same key hold equal field values of the same types, and unstructuring (a
    function of those values) gives them the same snapshots. So when the key is the one the
    states had when they were last committed, none changed, and :meth:`SessionImage.delta`
    need not unstructure each and fingerprint the result (~3 us of every commit, for the
    kernel's own state alone). One key for all of a session's states, kept in one slot (an idle
    session holds no more than before; the key is interned, shared by sessions whose states
    are alike); when a state changed, or is not plain data, every state takes the way each
    always took.
    """
    values = []
    for plugin, state in states.items():
        cls = type(state)
        if not attrs.has(cls):
            return None
        values.append((plugin, _fields_of(cls)(state)))
    key = fingerprint(tuple(values))
    return key if type(key) is str else None


def build_session_options(
    session_id: str,
    composition: Composition,
    overrides: Mapping[str, Mapping[str, Any]],
    config: SessionConfig,
) -> dict[str, Any]:
    """Every plugin's options for a session: host config, then the options given when the
    session handle was made, then options set with ``configure()`` (durable)."""
    built: dict[str, Any] = {}
    configured = config.plugin_options
    for plugin in composition.loaded:
        meta = plugin.info.meta
        if meta.options is not None:
            data = {**composition.config.options.get(plugin.name, {})}
            data.update(overrides.get(plugin.name, {}))
            data.update(configured.get(plugin.name, {}))
            built[plugin.name] = build_options(plugin.name, meta.options, data)
    unknown = (set(overrides) | set(configured)) - set(built)
    if unknown:
        raise SessionError(
            f"session {session_id!r}: options given for {sorted(unknown)}, which are not "
            "enabled plugins declaring options",
            session_id=session_id,
        )
    return built


def migrate_protocol_options(
    config: SessionConfig, composition: Composition
) -> tuple[SessionConfig, list[str]]:
    """Migration "protocol options become plugin options" (lash 0.2).

    lash 0.1 kept untyped ``protocol_options`` beside typed plugin options. A stored config that
    still has them (read into :data:`LEGACY_PROTOCOL_OPTIONS`) gets each key its protocol plugin's
    options class declares moved into that plugin's options (a value set there already wins);
    keys it does not declare are dropped and named in the returned messages. The migrated config
    is committed with the session's next commit.
    """
    legacy = config.plugin_options.get(LEGACY_PROTOCOL_OPTIONS)
    if legacy is None:
        return config, []
    options = {k: dict(v) for k, v in config.plugin_options.items()}
    del options[LEGACY_PROTOCOL_OPTIONS]
    values = dict(legacy.get("protocol_options", {}))
    messages: list[str] = []
    if values:
        plugin, _ = composition.protocol()
        declared = composition.plugin(plugin).info.meta.options
        fields = {f.name for f in attrs.fields(declared)} if declared is not None else set()
        kept = {k: v for k, v in values.items() if k in fields}
        dropped = sorted(set(values) - set(kept))
        if kept:
            options[plugin] = {**kept, **options.get(plugin, {})}
            messages.append(
                f"moved protocol options {sorted(kept)} into plugin {plugin!r}'s options"
            )
        if dropped:
            messages.append(
                f"dropped protocol options {dropped}: plugin {plugin!r} declares no such options"
            )
    return attrs.evolve(config, plugin_options=options), messages
