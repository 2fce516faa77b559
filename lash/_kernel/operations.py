"""Session operations between turns: config mutation, compaction, the tool catalog, commands.

Each operation takes the session's turn lock (never runs inside a turn) and ends in one commit of
its own, so it is as durable and atomic as a turn: a failing or cancelled operation commits
nothing and leaves the session as it was (a cancellation that arrives while the commit is on its
way waits for it, and is raised once the session recorded it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from lash._contract.graph import AssistantMessage, FrameBoundary, GraphNode
from lash._contract.providers import ModelRequest, ModelResponse, collect_response
from lash._contract.serialization import structure, unstructure
from lash._contract.types import (
    AgentFrame,
    Compaction,
    Message,
    SessionConfig,
    ToolCatalogEntry,
    Usage,
)
from lash._kernel.frames import SplitToolPair, seed_frame
from lash._kernel.state import COMMANDS, KERNEL_STATE_KEY, KernelState, QueuedCommand
from lash._plugins.dispatch import call_impl
from lash.errors import PluginError, SessionError

if TYPE_CHECKING:
    from lash._kernel.session import Session

_CONFIG_FIELDS = ("provider", "model", "prompt_layers", "protocol_options", "plugin_options")


class SessionAdmin:
    """Mixin of :class:`lash.Session` with the between-turns operations."""

    # -- config mutation -------------------------------------------------------------------

    async def configure(self: Session, **patch: Any) -> SessionConfig:  # type: ignore[misc]
        """Change the session's configuration: ``provider``, ``model``, ``prompt_layers``,
        ``protocol_options`` (merged) and ``plugin_options`` (merged per plugin).

        When something changes, ``mutate_session_config`` runs as a chain (each plugin may amend
        the proposal or reject it by raising :class:`lash.ConfigRejected`), the result is
        validated (provider exists, plugin options fit their classes), committed durably, and
        ``session_config_changed`` is broadcast. Returns the configuration in force.

        ``materialize_session`` does not run again: ``protocol_options`` apply at once, while
        plugin options that plugins read only at open (e.g. ``standard``'s ``max_tool_rounds``,
        a compaction threshold) take effect at the next open.

        :raises ConfigRejected: naming the plugin that rejected the change and why; the session
            is left untouched.
        """
        unknown = sorted(set(patch) - set(_CONFIG_FIELDS))
        if unknown:
            raise SessionError(
                f"configure() got unknown field(s) {unknown}; known: {', '.join(_CONFIG_FIELDS)}",
                session_id=self.id,
            )
        async with self._exclusive():
            self._require_open()
            previous = self._config
            proposed = _apply_patch(previous, patch)
            if proposed == previous:
                return previous
            hooks = self.core.hooks
            final = proposed
            # The chain, run here so each amendment is checked as it is made and a wrong
            # return value is blamed on the plugin that returned it.
            for impl in hooks.impls("mutate_session_config"):
                amended = await call_impl(
                    "mutate_session_config", impl, session=self, previous=previous, proposed=final
                )
                if amended is None:
                    continue
                if not isinstance(amended, SessionConfig):
                    raise PluginError(
                        f"plugin {impl.plugin!r} returned {type(amended).__name__} from "
                        "mutate_session_config; return a lash.SessionConfig (or None)",
                        plugin=impl.plugin,
                        hook="mutate_session_config",
                    )
                final = amended
            if final == previous:
                return previous
            self.core._provider_for(final)  # an unknown provider is rejected before committing
            options = self._build_options(final.plugin_options)
            old_options, old_protocol = self._options, dict(self._protocol_options)
            self._config, self._config_dirty = final, True
            self._options = options
            self._protocol_options.update(final.protocol_options)
            try:
                await self._commit([], {}, turns=0)
            except BaseException:
                self._config, self._options = previous, old_options
                self._protocol_options = old_protocol
                raise
        await hooks.broadcast(
            "session_config_changed", session=self, previous=previous, current=final
        )
        return final

    # -- compaction ------------------------------------------------------------------------

    def set_compaction_threshold(self: Session, tokens: int | None) -> None:  # type: ignore[misc]
        """Compact automatically after a turn whose last prompt exceeded ``tokens`` input tokens
        (``None``: never). A compaction plugin sets this in ``materialize_session``."""
        self._compact_threshold = tokens

    async def compact(  # type: ignore[misc]
        self: Session, instructions: str | None = None
    ) -> AgentFrame | None:
        """Compact the context into a new agent frame (``compact_context``, a "first" hook).

        Returns the new frame, or ``None`` when no plugin compacted. The old history stays in
        the graph. A failing or cancelled compaction commits nothing (see the module's note on
        a cancellation during the commit).
        """
        async with self._exclusive():
            self._require_open()
            return await self._compact(instructions, reason="compaction")

    async def _compact(  # type: ignore[misc]
        self: Session, instructions: str | None, *, reason: str
    ) -> AgentFrame | None:
        answer = await self.core.hooks.first(
            "compact_context", session=self, instructions=instructions
        )
        if answer is None:
            return None  # any completion usage is committed with the next commit
        plugin, compaction = answer
        if not isinstance(compaction, Compaction):
            raise PluginError(
                f"plugin {plugin!r} returned {type(compaction).__name__} from compact_context; "
                "return a lash.Compaction",
                plugin=plugin,
                hook="compact_context",
            )
        return await self._open_frame(
            reason=reason,
            summary=compaction.summary,
            keep_recent_turns=compaction.keep_recent_turns,
        )

    async def _open_frame(  # type: ignore[misc]
        self: Session, *, reason: str, summary: str | None, keep_recent_turns: int
    ) -> AgentFrame:
        nodes = self._seed(reason=reason, summary=summary, keep_recent_turns=keep_recent_turns)
        usage = dict(self._pending_usage)
        self._pending_usage.clear()
        try:
            await self._commit(nodes, usage, turns=0)
        except BaseException:
            self._pending_usage.update(usage)  # not committed: keep it for the next commit
            raise
        self._graph.extend(nodes)
        await self._frames_opened(nodes)
        return AgentFrame(
            id=nodes[0].frame_id, parent_id=self._previous_frame(nodes[0]), reason=reason
        )

    @staticmethod
    def _previous_frame(node: GraphNode) -> str | None:
        return node.previous_frame_id if isinstance(node, FrameBoundary) else None

    def _seed(  # type: ignore[misc]
        self: Session, *, reason: str, summary: str | None, keep_recent_turns: int
    ) -> list[GraphNode]:
        try:
            return seed_frame(
                self._graph.active_path(),
                turn=self._turns,
                reason=reason,
                summary=summary,
                keep_recent_turns=keep_recent_turns,
            )
        except SplitToolPair as exc:
            raise SessionError(f"session {self.id!r}: {exc}", session_id=self.id) from None

    async def _maybe_auto_compact(  # type: ignore[misc]
        self: Session, turn_nodes: Sequence[GraphNode]
    ) -> None:
        """After a turn: compact when the turn's last prompt went over the threshold (errors
        are reported, never raised: the turn itself is already committed)."""
        threshold = self._compact_threshold
        if threshold is None:
            return
        last = next((n for n in reversed(turn_nodes) if isinstance(n, AssistantMessage)), None)
        if last is None or last.usage.input_tokens <= threshold:
            return
        try:
            await self._compact(None, reason="auto_compaction")
        except PluginError as exc:
            self.core.hooks.report(exc)
        except SessionError as exc:
            self.core.hooks.report(exc)

    async def complete(  # type: ignore[misc]
        self: Session,
        messages: Sequence[Message],
        *,
        source: str,
        model: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> ModelResponse:
        """A direct completion with the session's provider (no tools, nothing recorded in the
        graph); its usage is attributed to ``source`` in the session's next commit. Plugins use
        it for summaries (the ``compaction`` builtin) and other side questions."""
        _name, provider, default_model = self._provider()
        request = ModelRequest(
            model=model or default_model, messages=tuple(messages), options=dict(options or {})
        )
        response = await collect_response(provider.stream(request))
        self._pending_usage[source] = self._pending_usage.get(source, Usage()) + response.usage
        return response

    # -- tool catalog ----------------------------------------------------------------------

    def tools(self: Session) -> tuple[ToolCatalogEntry, ...]:  # type: ignore[misc]
        """The session's tool catalog: every tool with its plugin and membership, orphaned
        tools (whose plugin is gone) last, as non-members."""
        return self._kernel.entries(self.core._available_tools())

    async def set_tool_membership(  # type: ignore[misc]
        self: Session, changes: Mapping[str, bool]
    ) -> int:
        """Make tools members (offered to the model) or not; committed at once. Returns the
        catalog generation. :raises SessionError: naming unknown tools."""
        async with self._exclusive():
            self._require_open()
            known = set(self.core._available_tools()) | set(self._kernel.tool_plugins)
            with self._kernel_rollback():
                try:
                    changed = self._kernel.set_members(changes, known)
                except KeyError as exc:
                    raise SessionError(
                        f"session {self.id!r}: unknown tool(s) {exc.args[0]}", session_id=self.id
                    ) from None
                if changed:
                    await self._commit([], {}, turns=0)
            return self._kernel.generation

    # -- session commands ------------------------------------------------------------------

    async def enqueue_command(self: Session, name: str, *, key: str) -> bool:  # type: ignore[misc]
        """Queue a durable session command (``refresh_tool_catalog`` or ``reset``), applied
        before the next turn (or by :meth:`apply_commands`).

        ``key`` makes it idempotent: a key already queued or applied is ignored (returns
        ``False``). :raises SessionError: for an empty key or an unknown command.
        """
        if not key or not key.strip():
            raise SessionError(
                f"session {self.id!r}: a command needs a non-empty idempotency key",
                session_id=self.id,
            )
        if name not in COMMANDS:
            raise SessionError(
                f"session {self.id!r}: unknown command {name!r}; known: {', '.join(COMMANDS)}",
                session_id=self.id,
            )
        async with self._exclusive():
            self._require_open()
            if self._kernel.knows_key(key):
                return False
            with self._kernel_rollback():
                self._kernel.commands.append(QueuedCommand(name, key))  # type: ignore[arg-type]
                await self._commit([], {}, turns=0)
            return True

    async def apply_commands(self: Session) -> int:  # type: ignore[misc]
        """Apply queued commands now (a turn does this first anyway); returns how many ran."""
        async with self._exclusive():
            self._require_open()
            count = len(self._kernel.commands)
            if count == 0:
                return 0
            with self._kernel_rollback():
                nodes = self._run_commands()
                await self._commit(nodes, {}, turns=0)
            self._graph.extend(nodes)
            await self._frames_opened(nodes)
            return count

    @contextlib.contextmanager
    def _kernel_rollback(self: Session) -> Iterator[None]:  # type: ignore[misc]
        """Restore the kernel state if the block fails (memory never drifts from the store)."""
        saved = unstructure(self._kernel)
        try:
            yield
        except BaseException:
            self._states[KERNEL_STATE_KEY] = structure(saved, KernelState)
            raise

    async def _frames_opened(  # type: ignore[misc]
        self: Session, nodes: Sequence[GraphNode]
    ) -> None:
        """Broadcast ``frame_opened`` for every frame boundary among committed ``nodes``."""
        for node in nodes:
            if isinstance(node, FrameBoundary):
                frame = AgentFrame(
                    id=node.frame_id, parent_id=node.previous_frame_id, reason=node.reason
                )
                await self.core.hooks.broadcast("frame_opened", session=self, frame=frame)

    def _run_commands(self: Session) -> list[GraphNode]:  # type: ignore[misc]
        """Apply and dequeue every queued command; return the nodes they add (reset frames,
        not yet in the graph: the caller records them in its commit)."""
        kernel: KernelState = self._kernel
        nodes: list[GraphNode] = []
        while kernel.commands:
            command = kernel.commands.pop(0)
            if command.name == "refresh_tool_catalog":
                available = self.core._available_tools()
                kernel.refresh({name: plugin for name, (plugin, _) in available.items()})
            elif command.name == "reset":
                # The frame a reset leaves: the graph's, or the one an earlier reset just opened.
                active = nodes[-1:] if nodes else list(self._graph.active_path())
                nodes.extend(
                    seed_frame(
                        active, turn=self._turns, reason="reset", summary=None, keep_recent_turns=0
                    )
                )
            kernel.mark_applied(command.key)
        return nodes


def _apply_patch(config: SessionConfig, patch: Mapping[str, Any]) -> SessionConfig:
    changes: dict[str, Any] = {}
    for field, value in patch.items():
        if field == "protocol_options":
            changes[field] = {**config.protocol_options, **value}
        elif field == "plugin_options":
            merged = {k: dict(v) for k, v in config.plugin_options.items()}
            for plugin, values in value.items():
                merged[plugin] = {**merged.get(plugin, {}), **values}
            changes[field] = merged
        elif field == "prompt_layers":
            changes[field] = tuple(value)
        else:
            changes[field] = value
    return attrs.evolve(config, **changes)
