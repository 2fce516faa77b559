"""The session graph: append-only nodes grouped into agent frames.

Nothing here rewrites history (DESIGN invariant 1). A session's nodes form a chain of parent
links; a :class:`FrameBoundary` node opens a new agent frame, and the model only sees the active
frame (from its boundary to the leaf).
"""

from __future__ import annotations

import operator
import os
import random
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal, overload

import attrs

from lash._contract.annotations import resolve_here
from lash._contract.media import image_ref
from lash._contract.slots import maker
from lash._contract.turn_types import Message
from lash._contract.types import ToolCall, Usage

__all__ = [
    "AssistantMessage",
    "FrameBoundary",
    "GraphNode",
    "PluginNode",
    "SessionGraph",
    "StoredNodes",
    "ToolCallNode",
    "ToolResultNode",
    "TurnOutcome",
    "UserMessage",
]


# Node ids come from a generator seeded with 256 bits from the OS (again in a forked child, which
# would otherwise repeat its parent's ids), not from os.urandom per id: a turn makes six, and a
# system call each cost ~1 us of a turn's ~200 us. Ids need to be unique, not unpredictable.
_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))


def new_node_id() -> str:
    """A node id: 64 random bits, unique within a session across processes and restarts."""
    # 16 lowercase hex digits, as f"{bits:016x}" spells them, in less than half its time.
    return _ids.getrandbits(64).to_bytes(8, "big").hex()


@attrs.frozen(kw_only=True)
class _NodeBase:
    id: str
    parent_id: str | None
    frame_id: str
    turn: int


@attrs.frozen(kw_only=True)
class UserMessage(_NodeBase):
    """What the user said (turn input)."""

    text: str
    items: tuple[Any, ...] = ()

    __module__ = "lash"


@attrs.frozen(kw_only=True)
class AssistantMessage(_NodeBase):
    """One model response: its text, the tool calls it asked for, and its usage."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Usage()
    model: str | None = None

    __module__ = "lash"


@attrs.frozen(kw_only=True)
class ToolCallNode(_NodeBase):
    """A tool call as the model asked for it (recorded before the tool-call hooks run; the
    arguments actually used after ``before_tool_call`` directives are in the turn's
    :class:`lash.ToolCallRecord`)."""

    call: ToolCall
    plugin: str | None = None

    __module__ = "lash"


@attrs.frozen(kw_only=True)
class ToolResultNode(_NodeBase):
    """The full result of a tool call; ``projected`` is what the model was shown, if different."""

    call_id: str
    name: str
    content: str
    is_error: bool = False
    projected: str | None = None

    __module__ = "lash"


@attrs.frozen(kw_only=True)
class PluginNode(_NodeBase):
    """A node a plugin records in the history (not shown to the model unless it says so)."""

    plugin: str
    kind: str
    data: Any = None

    __module__ = "lash"


@attrs.frozen(kw_only=True)
class FrameBoundary(_NodeBase):
    """Opens agent frame ``frame_id``; ``summary`` seeds it (compaction), ``reason`` says why."""

    previous_frame_id: str | None
    reason: str = "root"
    summary: str | None = None

    __module__ = "lash"


@attrs.frozen(kw_only=True)
class TurnOutcome(_NodeBase):
    """How turn ``turn_id`` ended: the last node of every committed turn.

    ``outcome`` is ``completed``, ``stopped`` (``reason``: ``cancelled``, ``max_tool_rounds``,
    ``plugin_abort``...) or ``failed`` (``error``: why, with secrets redacted);
    ``cancelled_by`` names who asked a cancelled turn to stop.
    """

    turn_id: str
    outcome: Literal["completed", "stopped", "failed"]
    reason: str | None = None
    detail: str | None = None
    error: str | None = None
    cancelled_by: str | None = None

    __module__ = "lash"


#: Every node variant (a tagged union in serialized form).
GraphNode = (
    UserMessage
    | AssistantMessage
    | ToolCallNode
    | ToolResultNode
    | PluginNode
    | FrameBoundary
    | TurnOutcome
)


class _Rows:
    """What a record's :class:`StoredNodes` shares with the graph resumed from it: the items
    (each a node, or not built yet: its decoded body, a dict or a list, or ``None``: decode the
    row's text
    again), the rows they are built from, and the lock a build takes (sync tools read a
    session's nodes from threads of their own, at once)."""

    __slots__ = ("items", "lock", "rows", "taken")

    def __init__(self, items: list[Any], rows: list[Sequence[Any]]) -> None:
        self.items = items
        self.rows = rows
        self.lock = threading.Lock()
        self.taken = False  # a graph resumed from these items (it appends to them)


class StoredNodes(Sequence[GraphNode]):
    """A session's stored nodes, each built the first time it is read: what a store's
    :class:`lash.store.SessionRecord` may hold instead of a tuple (made by
    :func:`lash.store.nodes_on_demand`).

    It reads as the tuple of the same nodes does: ``len``, indexing (a slice is a tuple),
    iteration, ``in``, ``reversed``, ``+`` and ``hash``, and it is ``==`` to a tuple (or list,
    or another one) of equal nodes; a copy or a pickle of it is that tuple. A node is built
    from its row when first read and kept: every later read gives the same object, from any
    thread. Resuming a session of a long frame builds only the few nodes it needs (the frame's
    boundary, the leaf, anything that is not a plain chat message or the end of a completed
    turn); the chat messages of its prompt are read from the decoded rows.

    What is checked when: :func:`~lash.store.nodes_on_demand` checks at once that each row's
    text is a JSON array (a positional body, :func:`lash.store.node_row_json`) or a JSON
    object in the body form, of a known kind, and that its id, frame and turn are of their
    types (a whole form written before, and anything odd, is built at once, the general
    way); resuming checks the fields the messages are read from; any other field (and a
    positional body's length) is checked when its node is built. Each raises the
    :class:`lash.ValidationError` :func:`lash.store.nodes_from_rows` would, naming the session.
    """

    __slots__ = ("_build", "_calls", "_shared", "_stop")
    __module__ = "lash.store"

    def __init__(
        self,
        items: list[Any],
        rows: list[Sequence[Any]],
        build: Callable[[Sequence[Any], Any], GraphNode],
        calls: tuple[Callable[[Any], ToolCall], Callable[[Any], ToolCall]],
        stop: int | None,
        shared: _Rows | None = None,
    ) -> None:
        # A node is built from its item and rows[i] (the row's columns). Reading every node at
        # once (iterating, a slice, ==) lets go of the rows; reading them one by one keeps
        # them. `shared` (default: new of items and rows): the record's, for its graph's view.
        self._shared = _Rows(items, rows) if shared is None else shared
        self._build = build
        # Build a ToolCall of its decoded stored form, by keys and positional (for messages).
        self._calls = calls
        self._stop = stop  # None: every item (the graph's view, which grows)

    def __len__(self) -> int:
        return len(self._shared.items) if self._stop is None else self._stop

    @overload
    def __getitem__(self, index: int) -> GraphNode: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[GraphNode]: ...

    def __getitem__(self, index: int | slice) -> GraphNode | Sequence[GraphNode]:
        if isinstance(index, slice):
            return tuple(self._built()[index])
        size = len(self)
        i = index + size if index < 0 else index
        if not 0 <= i < size:
            raise IndexError("node index out of range")
        shared = self._shared
        item = shared.items[i]
        if item is None or type(item) in _BODIES:
            with shared.lock:  # built once: another thread may be building it now
                item = shared.items[i]
                if item is None or type(item) in _BODIES:
                    item = shared.items[i] = self._build(shared.rows[i], item)
        node: GraphNode = item
        return node

    def __iter__(self) -> Iterator[GraphNode]:
        return iter(self._built())

    def _built(self) -> list[GraphNode]:
        """Every item as a node (built now if not yet): the shared list, or its first ``stop``."""
        shared = self._shared
        items = shared.items
        if shared.rows:
            with shared.lock:
                rows = shared.rows
                if rows:
                    build = self._build
                    for i, item in enumerate(items[: len(rows)]):
                        if item is None or type(item) in _BODIES:
                            items[i] = build(rows[i], item)
                    rows.clear()  # every node built: the rows are not needed any more
        return items if self._stop is None else items[: self._stop]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StoredNodes | tuple | list):
            return len(self) == len(other) and all(
                a == b for a, b in zip(self._built(), other, strict=False)
            )
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __add__(self, other: Sequence[GraphNode]) -> tuple[GraphNode, ...]:
        return (*self, *other)

    def __radd__(self, other: Sequence[GraphNode]) -> tuple[GraphNode, ...]:
        return (*other, *self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (tuple, (tuple(self),))  # a copy or a pickle is the tuple of the nodes

    def __repr__(self) -> str:
        return f"StoredNodes({tuple(self)!r})"


class _ActiveNodes(StoredNodes):
    """The nodes of a graph resumed from :class:`StoredNodes`: the same, growing as the graph
    appends (as the list of a graph built node by node)."""

    __slots__ = ()

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return self._built()[index]  # a list, as the graph's own list gives
        return super().__getitem__(index)

    def append(self, node: GraphNode) -> None:
        self._shared.items.append(node)

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (list(self),))  # a copy or a pickle is the graph's list of its nodes


#: A frame of fewer rows resumes with every node built and its rows let go (its nodes take less
#: memory than the rows and decoded bodies kept to build them later).
ON_DEMAND_MIN = 64


@attrs.define
class SessionGraph:
    """The nodes a session holds in memory: the active agent frame, boundary first.

    Appending a :class:`FrameBoundary` starts a new active frame and lets go of the previous one
    (it is committed history; stores keep it).
    """

    __module__ = "lash"

    # A list, or for a graph resumed from StoredNodes, those nodes (built when read).
    nodes: list[GraphNode] | _ActiveNodes = attrs.field(factory=list)
    # The active frame's messages, kept in step with `nodes` so building a prompt never walks
    # the history again (turn cost must not grow with it).
    _messages: list[Message] = attrs.field(factory=list, alias="_messages")
    # How many of `_messages` carry images, kept with them: a prompt without images (most) is
    # known so at once, instead of by a look at every message at every model call.
    _with_images: int = attrs.field(default=0, alias="_with_images")
    # The last prompt built (prompt_messages): its first message, the message list it was
    # built from, how many of it it holds, and the tuple. Messages are only ever appended to
    # that list (a new frame starts a new one), so the next prompt is that tuple and the
    # messages appended since: one copy of the history, not three (list, tuple, and the
    # list's release). Kept while a turn runs (release_prompt; an idle session holds none).
    _prompt: tuple[Message | None, list[Message], int, tuple[Message, ...]] | None = attrs.field(
        default=None, init=False, eq=False, repr=False
    )

    @property
    def leaf(self) -> GraphNode | None:
        return self.nodes[-1] if self.nodes else None

    @property
    def frame_id(self) -> str | None:
        if not self.nodes:
            return None
        return self.nodes[0].frame_id

    def active_path(self) -> Sequence[GraphNode]:
        """The nodes of the active agent frame, boundary first."""
        return self.nodes

    def append(self, node: GraphNode) -> None:
        # The nodes every turn appends (exact classes), their messages made here as
        # node_message makes them: two calls fewer a node, six nodes a turn (~1 % of a
        # memory:// turn); anything else, a boundary included, goes the general way
        # (_append_node, held to this by a property test). type(node) in each test, not a
        # local: mypy narrows the node by it.
        if type(node) is AssistantMessage:
            self.nodes.append(node)
            self._messages.append(_message("assistant", node.text, node.tool_calls, None, ()))
        elif type(node) is ToolResultNode:
            content = node.projected if node.projected is not None else node.content
            self.nodes.append(node)
            self._messages.append(_message("tool", content, (), node.call_id, ()))
        elif type(node) is ToolCallNode or (
            type(node) is TurnOutcome and node.outcome == "completed"
        ):
            self.nodes.append(node)  # no message
        elif type(node) is UserMessage and not node.items:
            self.nodes.append(node)
            self._messages.append(_message("user", node.text, (), None, ()))
        else:
            self._append_node(node)

    def _append_node(self, node: GraphNode) -> None:
        """:meth:`append`, the general way (any node)."""
        if isinstance(node, FrameBoundary):
            # Earlier frames are committed history the model no longer sees: memory holds only
            # the active frame (the store keeps everything).
            self.nodes = []
            self._messages = []
            self._with_images = 0
        self.nodes.append(node)
        self._add_messages(node)

    def _add_messages(self, node: GraphNode) -> None:
        """Add the chat messages of ``node`` (none or one) to the active frame's."""
        if isinstance(node, TurnOutcome):
            if node.outcome != "completed" and self._messages and self._messages[-1].role == "user":
                # A turn that ended without an answer: say so, so the next turn's user message
                # does not follow this one (providers expect the roles to alternate).
                why = f" ({node.reason})" if node.reason else ""
                self._messages.append(
                    Message("assistant", f"[no answer: the turn {node.outcome}{why}]")
                )
            return
        message = node_message(node)
        if message is not None:
            self._messages.append(message)
            if message.images:
                self._with_images += 1

    def messages(self) -> list[Message]:
        """The chat messages of the active frame (a copy)."""
        return list(self._messages)

    @property
    def image_messages(self) -> int:
        """How many chat messages of the active frame carry images (counted as nodes are
        appended: no walk over the history)."""
        return self._with_images

    def prompt_messages(self, first: Message | None = None) -> tuple[Message, ...]:
        """The chat messages of the active frame as a tuple, ``first`` (a system message)
        before them when given: what a model call's prompt holds, in one copy."""
        messages = self._messages
        last = self._prompt
        if last is not None and last[0] is first and last[1] is messages:
            count = last[2]
            prompt = last[3] + tuple(messages[count:]) if len(messages) > count else last[3]
        else:
            prompt = (first, *messages) if first is not None else tuple(messages)
        self._prompt = (first, messages, len(messages), prompt)
        return prompt

    def release_prompt(self) -> None:
        """Let go of the last prompt (:meth:`prompt_messages` builds the next one whole)."""
        self._prompt = None

    def extend(self, nodes: Iterable[GraphNode]) -> None:
        """Append each of ``nodes``, as :meth:`append` does one by one.

        Resuming a session extends an empty graph with its whole active frame: one pass here,
        the messages of the common node classes built inline (exact classes only; anything
        else, a boundary included, goes through :meth:`append`).
        """
        if (
            type(nodes) is StoredNodes
            and not self.nodes
            and len(nodes) >= ON_DEMAND_MIN
            and self._extend_stored(nodes)
        ):
            return
        messages = self._messages
        add = messages.append
        for node in nodes:
            # type(node) in each test, not a local: mypy narrows the node by it.
            if type(node) is AssistantMessage:
                add(_message("assistant", node.text, node.tool_calls, None, ()))
            elif type(node) is ToolResultNode:
                content = node.projected if node.projected is not None else node.content
                add(_message("tool", content, (), node.call_id, ()))
            elif type(node) is UserMessage and not node.items:
                add(_message("user", node.text, (), None, ()))
            elif type(node) is ToolCallNode or (
                type(node) is TurnOutcome and node.outcome == "completed"
            ):
                pass  # no message
            else:
                self.append(node)  # may start a new frame: its lists are new ones
                messages = self._messages
                add = messages.append
                continue
            self.nodes.append(node)

    def _extend_stored(self, stored: StoredNodes) -> bool:
        """:meth:`extend` of an empty graph with nodes just loaded: the messages of the common
        rows straight from their decoded bodies (exactly what :func:`node_message` gives for
        their nodes), the other rows' nodes built to go the general way; the graph then holds
        ``stored``'s nodes, built when read. ``False`` (and nothing changed) for nodes of more
        than one frame, or of a record another graph resumed from (it appends to its items),
        or whose rows were let go: those go the general way. A row that fails its build
        raises, the graph left unchanged."""
        shared = stored._shared
        with shared.lock:
            items, rows = shared.items, shared.rows
            if shared.taken or not len(items) == len(rows) == stored._stop:
                return False
            graph = SessionGraph()  # the messages made here, assigned once all are made
            messages = graph._messages
            add = messages.append
            (call, call_p), build = stored._calls, stored._build
            # A body read into a message is let go (None: the row's text is decoded again when
            # its node is built): decoded, the bodies take twice the memory of the nodes. A
            # positional body (a list, node_row_json) is read by index, one by keys (a dict:
            # older rows, other stores) by key; a trailing value at its default may be left
            # out of the one, a key at its default out of the other: () stands for a list
            # left out, None for a value.
            for i, (data, kind) in enumerate(zip(items, map(_KIND, rows), strict=True)):
                listed = type(data) is list
                if listed or type(data) is dict:
                    try:
                        if kind == "assistant":
                            if listed:
                                text, make = data[_TEXT], call_p
                                calls = data[_CALLS] if len(data) > _CALLS else ()
                            else:
                                text, calls, make = data["text"], data.get("tool_calls", ()), call
                            if type(text) is str and type(calls) in _LISTED:
                                made = tuple(map(make, calls)) if calls else ()
                                add(_message("assistant", text, made, None, ()))
                                items[i] = None
                                continue
                        elif kind == "tool_call":
                            items[i] = None
                            continue
                        elif kind == "user":
                            if listed:
                                text = data[_TEXT]
                                attached = data[_ITEMS] if len(data) > _ITEMS else ()
                            else:
                                text, attached = data["text"], data.get("items", ())
                            if type(text) is str and type(attached) in _LISTED and not attached:
                                add(_message("user", text, (), None, ()))
                                items[i] = None
                                continue
                        elif kind == "tool_result":
                            if listed:
                                content, call_id = data[_CONTENT], data[_CALL_ID]
                                projected = data[_PROJECTED] if len(data) > _PROJECTED else None
                            else:
                                content, call_id = data["content"], data["call_id"]
                                projected = data.get("projected")
                            if projected is not None:
                                content = projected
                            if type(content) is str and type(call_id) is str:
                                add(_message("tool", content, (), call_id, ()))
                                items[i] = None
                                continue
                        elif kind == "outcome":
                            if (data[_OUTCOME] if listed else data["outcome"]) == "completed":
                                items[i] = None
                                continue
                    except Exception:
                        pass  # the general way: the node is built (a bad one raises, named)
                if data is None or type(data) in _BODIES:
                    data = items[i] = build(rows[i], data)
                if i and isinstance(data, FrameBoundary):
                    return False
                graph._add_messages(data)
            shared.taken = True
        self._messages = messages
        self._with_images = graph._with_images
        self.nodes = _ActiveNodes(items, rows, stored._build, stored._calls, None, shared)
        return True

    def __iter__(self) -> Iterator[GraphNode]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)


def node_message(node: GraphNode) -> Message | None:
    """The chat message a model sees for one node (tool results as projected), if any. (Made
    by ``_message``, the class's ``__init__`` at half its cost: one for most of a turn's
    nodes.)"""
    if isinstance(node, UserMessage):
        if node.items:  # images are stored as references; the prompt view loads their bytes
            images = tuple(i for i in map(image_ref, node.items) if i is not None)
            return _message("user", node.text, (), None, images)
        return _message("user", node.text, (), None, ())
    if isinstance(node, AssistantMessage):
        return _message("assistant", node.text, node.tool_calls, None, ())
    if isinstance(node, ToolResultNode):
        content = node.projected if node.projected is not None else node.content
        return _message("tool", content, (), node.call_id, ())
    if isinstance(node, FrameBoundary) and node.summary:
        return Message("user", f"[Summary of the conversation so far]\n{node.summary}")
    return None


resolve_here(globals())
_KIND = operator.itemgetter(1)  # a stored row's kind
#: A body's list, decoded (a list), or left out at its default (the () of the `get`).
_LISTED = (list, tuple)
#: The decoded bodies a StoredNodes item may be (not built yet): by keys or positional.
_BODIES = (dict, list)


def _position(cl: type, name: str) -> int:
    """Where field ``name`` of node class ``cl`` is in its positional body (node_row_json):
    its attrs order, without the row's columns (serialization.ROW_COLUMNS, named here again:
    importing that module loads cattrs, which ``import lash`` leaves for later)."""
    names = [a.name for a in attrs.fields(cl) if a.name not in ("id", "frame_id", "turn")]
    return names.index(name)


_TEXT = _position(UserMessage, "text")
_ITEMS = _position(UserMessage, "items")
_CALLS = _position(AssistantMessage, "tool_calls")
_CALL_ID = _position(ToolResultNode, "call_id")
_CONTENT = _position(ToolResultNode, "content")
_PROJECTED = _position(ToolResultNode, "projected")
_OUTCOME = _position(TurnOutcome, "outcome")
assert _position(AssistantMessage, "text") == _TEXT  # one index for both messages' text
#: ``_message(role, content, tool_calls, tool_call_id, images)``: a :class:`Message` as its
#: ``__init__`` makes it, for about half the cost (a resumed session makes one per message).
_message = maker(Message)
