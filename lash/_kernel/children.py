"""Child sessions (sub-agents): the link to a parent, what a child inherits, and how its usage
rolls up.

A child session is an ordinary session whose head records a ``parent_id``. It is built in
memory with ``is_root=False`` (``prepare_session`` and ``SessionView.is_root`` say so), starts
from its parent's configuration unless told otherwise, may be restricted to an allowlist of
tools (kept in the kernel state, so it holds for every later open), and every commit of a child
adds the usage it commits to each of its ancestors' usage totals, in the same transaction,
under ``child:<id>`` (the id of the ancestor's own child on the way down): a parent's usage
report counts what its sub-agents spent, however deep. A deleted ancestor, and a session
created again under its id, are not ancestors any more: the store follows the child's stored
links, each naming its parent's incarnation, and the lineage read here stops where they do.

This module holds what does not need a session runtime: the spec a creator gives, the checks,
the lineage read from the store and the roll-up of one commit. The runtime applies them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from lash._contract.turn_types import SessionConfig
from lash._contract.types import Usage
from lash._kernel.configpatch import CONFIG_FIELDS, apply_patch, check_fields
from lash._store.ids import MAX_SESSION_ID_LENGTH
from lash.errors import SessionError

if TYPE_CHECKING:
    from lash._store.protocol import Store
    from lash._store.records import SessionRecord

#: How deep children may nest (a lineage longer than this is refused: a loop, or a runaway).
MAX_DEPTH = 32

#: The usage source a child's usage rolls up under in its ancestors: ``child:<id>``.
ROLLUP_PREFIX = "child:"


@attrs.frozen
class ChildSpec:
    """What the creator of a child session asked for (applied when the child is created: a
    child that exists already keeps what it was created with)."""

    parent_id: str
    #: The tool allowlist (``None``: every tool the parent's host offers).
    tools: tuple[str, ...] | None = None
    #: Start from the parent's configuration (provider, model, prompt layers, plugin options).
    inherit: bool = True
    #: A ``configure()``-style patch applied on top of the inherited (or default) config.
    config: Mapping[str, Any] = attrs.field(factory=dict)
    #: The parent's configuration and lineage when the creator has the parent in memory (a
    #: tool or hook of the parent, or an open host handle); ``None``: read from the store.
    parent_config: SessionConfig | None = None
    parent_lineage: tuple[str, ...] | None = None
    #: The parent's incarnation as that handle loaded it (``None``: not known, or not
    #: committed yet).
    parent_incarnation: int | None = None


def child_id(parent_id: str) -> str:
    """A new id for a child of ``parent_id``: ``<parent>/<12 hex>`` (``child-<32 hex>`` when the
    parent's id leaves no room under the session id limit)."""
    suffix = uuid.uuid4().hex
    candidate = f"{parent_id}/{suffix[:12]}"
    return candidate if len(candidate) <= MAX_SESSION_ID_LENGTH else f"child-{suffix}"


def check_tools(session_id: str, tools: Sequence[str] | None) -> tuple[str, ...] | None:
    """The allowlist as a tuple; a bare string or a non-string name is refused."""
    if tools is None:
        return None
    if isinstance(tools, str) or not all(isinstance(t, str) and t for t in tools):
        raise SessionError(
            f"session {session_id!r}: tools must be a list of tool names, got {tools!r}",
            session_id=session_id,
        )
    return tuple(dict.fromkeys(tools))


def check_link(session_id: str, record: SessionRecord | None, spec: ChildSpec) -> None:
    """A stored session opened as a child must be a child of that parent."""
    if spec.parent_id == session_id:
        raise SessionError(
            f"session {session_id!r} cannot be a child of itself", session_id=session_id
        )
    if record is not None and record.parent_id != spec.parent_id:
        what = (
            f"a child of session {record.parent_id!r}"
            if record.parent_id is not None
            else "a root session"
        )
        raise SessionError(
            f"session {session_id!r} exists as {what}; it cannot be opened as a child of "
            f"session {spec.parent_id!r}",
            session_id=session_id,
        )


def older_link(record: SessionRecord | None, spec: ChildSpec | None) -> bool:
    """Whether a stored child opened from a parent handle links to an earlier incarnation of
    that parent: one deleted since, whose id the handle's session took again."""
    return (
        record is not None
        and spec is not None
        and spec.parent_incarnation is not None
        and record.parent_incarnation != spec.parent_incarnation
    )


def initial_config(
    session_id: str,
    spec: ChildSpec,
    parent_config: SessionConfig | None,
    default: SessionConfig,
) -> SessionConfig:
    """The configuration a new child starts from: its parent's (``inherit``, when known) or the
    host's ``default``, with the spec's patch applied."""
    unknown = sorted(set(spec.config) - set(CONFIG_FIELDS))
    if unknown:
        raise SessionError(
            f"session {session_id!r}: a child session's config got unknown field(s) {unknown}; "
            f"known: {', '.join(CONFIG_FIELDS)}",
            session_id=session_id,
        )
    # (model_options too: before, a bad one failed naming no session, or with a bare error)
    check_fields(session_id, spec.config, "a child session's config")
    base = parent_config if spec.inherit and parent_config is not None else default
    return apply_patch(base, spec.config)


async def lineage(
    store: Store, session_id: str, parent_id: str, incarnation: int | None = None
) -> tuple[tuple[str, ...], Any]:
    """The ancestors of ``session_id`` (root first, ``parent_id`` last) read from the store, and
    the record of the session ``parent_id`` names (``None``: none committed). ``incarnation``
    is the one the child's stored link names (``None``: a new child, linked to the parent as
    it is now). A link that names another incarnation than its parent's (the parent was
    deleted and a session created again under its id) ends the lineage there, as a deleted
    ancestor does: the store would not roll up into it either.

    :raises SessionError: naming the child, when a new child's parent was never committed, or
        the lineage loops."""
    chain: list[str] = []
    current: str | None = parent_id
    parent_record: SessionRecord | None = None
    while current is not None:
        if current in chain or current == session_id or len(chain) >= MAX_DEPTH:
            raise SessionError(
                f"session {session_id!r}: its lineage {' <- '.join([*chain, current])} loops or "
                f"is deeper than {MAX_DEPTH}",
                session_id=session_id,
            )
        record = await store.load(current)
        if record is None:
            if current == parent_id and incarnation is None:
                raise SessionError(
                    f"session {session_id!r}: its parent session {parent_id!r} does not exist "
                    "(commit a turn there first, or create the child from the parent's view)",
                    session_id=session_id,
                )
            break  # an ancestor was deleted: the lineage ends there
        if parent_record is None:
            parent_record = record
        if incarnation is not None and record.incarnation != incarnation:
            break  # deleted, and another session created under its id since: not an ancestor
        chain.append(current)
        current, incarnation = record.parent_id, record.parent_incarnation
    return tuple(reversed(chain)), parent_record


def rollup(
    lineage: Sequence[str], session_id: str, usage: Mapping[str, Usage]
) -> dict[str, dict[str, Usage]]:
    """What one commit of ``session_id`` (with ``usage``) adds to its ancestors: to each, the
    commit's whole usage under ``child:<its child on the way down>``."""
    total = Usage()
    for amount in usage.values():
        total = total + amount
    if not lineage or total == Usage():
        return {}
    path = (*lineage, session_id)
    return {
        ancestor: {f"{ROLLUP_PREFIX}{path[index + 1]}": total}
        for index, ancestor in enumerate(lineage)
    }
