"""``tool_output_budget``: cap what the model sees of a tool result, by bytes and by lines.

A result over the budget is cut to its head, its tail, or both ends, and a marker line says how
much was cut. Only the model's view changes: the full result stays in the session graph
(``ToolResultNode.content``) and the cut text is recorded beside it (``ToolResultNode.projected``).
Error results are cut the same way. The limits are per-session options, with per-tool overrides.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

import lash

__all__ = [
    "BudgetOptions",
    "Keep",
    "ToolBudget",
    "count_lines",
    "marker",
    "project",
    "project_tool_result",
]

#: Which part of an over-budget result the model sees.
Keep = Literal["head", "tail", "head_tail"]

#: The plugin's name, as the marker line shows it.
NAME = "tool_output_budget"

# Tool output may carry lone surrogates (text decoded with errors="surrogateescape"); they count
# as the three bytes Python would encode them to instead of making the projection fail.
_ENCODING = ("utf-8", "surrogatepass")


def _positive(_: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    # (message, attribute) is the shape attrs' own validators use: lash's option errors then name
    # the field by its dotted path (options.tool_output_budget.max_bytes: ...).
    if value is not None and value < 1:
        raise ValueError(f"must be a positive integer, got {value!r}", attribute)


@attrs.frozen
class ToolBudget:
    """Overrides for one tool; a field left unset falls back to the plugin-wide option."""

    max_bytes: int | None = lash.option(
        default=None, validator=_positive, help="Most bytes of this tool's results shown."
    )
    max_lines: int | None = lash.option(
        default=None, validator=_positive, help="Most lines of this tool's results shown."
    )
    keep: Keep | None = lash.option(default=None, help="What this tool's results keep.")


@attrs.frozen
class BudgetOptions:
    """Per-session options of the tool output budget."""

    max_bytes: int = lash.option(
        default=16_000,
        validator=_positive,
        help="Most bytes (UTF-8) of a tool result the model sees, besides the marker line.",
    )
    max_lines: int = lash.option(
        default=400,
        validator=_positive,
        help="Most lines of a tool result the model sees, besides the marker line.",
    )
    keep: Keep = lash.option(
        default="head",
        help="What an over-budget result keeps: 'head', 'tail' or 'head_tail' (both ends).",
    )
    # RUF009 does not apply: lash.option is a field specifier, and factory=dict gives every
    # instance its own dict.
    per_tool: dict[str, ToolBudget] = lash.option(
        factory=dict,
        help="Overrides by tool name: {max_bytes, max_lines, keep}; unset fields fall back.",
    )

    def for_tool(self, name: str) -> tuple[int, int, Keep]:
        """``(max_bytes, max_lines, keep)`` in force for results of tool ``name``."""
        override = self.per_tool.get(name)
        if override is None:
            return self.max_bytes, self.max_lines, self.keep
        return (
            self.max_bytes if override.max_bytes is None else override.max_bytes,
            self.max_lines if override.max_lines is None else override.max_lines,
            self.keep if override.keep is None else override.keep,
        )


lash_plugin = lash.PluginMeta(
    options=BudgetOptions,
    description="Caps what the model sees of long tool results (by bytes and lines).",
)


def count_lines(text: str) -> int:
    """Lines of ``text``: pieces ended by ``\\n``, plus an unterminated last piece."""
    if not text:
        return 0
    return text.count("\n") + (0 if text.endswith("\n") else 1)


def _head(text: str, max_lines: int, max_bytes: int) -> str:
    """The longest prefix of ``text`` within both limits, never splitting a character."""
    if max_lines == 0 or max_bytes == 0:
        return ""
    end = -1
    for _ in range(max_lines):
        end = text.find("\n", end + 1)
        if end == -1:
            break
    head = text if end == -1 else text[: end + 1]
    data = head.encode(*_ENCODING)
    if len(data) <= max_bytes:
        return head
    cut = max_bytes
    # data[cut] is the first byte left out; a continuation byte (0b10xxxxxx) there means the
    # character straddles the cut, so it goes too.
    while cut > 0 and data[cut] & 0xC0 == 0x80:
        cut -= 1
    return data[:cut].decode(*_ENCODING)


def _tail(text: str, max_lines: int, max_bytes: int) -> str:
    """The longest suffix of ``text`` within both limits, never splitting a character."""
    if max_lines == 0 or max_bytes == 0:
        return ""
    # A final "\n" ends the last line rather than starting another one.
    start = len(text) - 1 if text.endswith("\n") else len(text)
    for _ in range(max_lines):
        start = text.rfind("\n", 0, start)
        if start == -1:
            break
    tail = text[start + 1 :]
    data = tail.encode(*_ENCODING)
    if len(data) <= max_bytes:
        return tail
    cut = len(data) - max_bytes
    # A continuation byte at the cut belongs to a character that started before it.
    while cut < len(data) and data[cut] & 0xC0 == 0x80:
        cut += 1
    return data[cut:].decode(*_ENCODING)


def _size(text: str) -> int:
    return len(text.encode(*_ENCODING))


def _plural(n: int, unit: str) -> str:
    return f"{n:,} {unit}" if n == 1 else f"{n:,} {unit}s"


def marker(cut: str) -> str:
    """The line that replaces ``cut``, saying how many bytes and lines it held."""
    size = _plural(_size(cut), "byte")
    return (
        f"[... {size} / {_plural(count_lines(cut), 'line')} cut by {NAME}; "
        "the full result is stored in the session]"
    )


def _around(before: str, line: str, after: str = "") -> str:
    # The marker is always a line of its own.
    if before and not before.endswith("\n"):
        before += "\n"
    return f"{before}{line}\n{after}" if after else before + line


def project(text: str, *, max_bytes: int, max_lines: int, keep: Keep = "head") -> str | None:
    """What the model sees of ``text`` under the budget, or ``None`` when it fits.

    The kept part holds at most ``max_bytes`` bytes (UTF-8) and ``max_lines`` lines; the marker
    line comes on top. ``head_tail`` splits the budget between both ends (the head gets the
    larger half of an odd one); what one end leaves unused goes to the other.
    """
    if max_bytes < 1 or max_lines < 1:
        raise ValueError(f"the budget must be positive, got {max_bytes=}, {max_lines=}")
    if count_lines(text) <= max_lines and _size(text) <= max_bytes:
        return None
    if keep == "head":
        head = _head(text, max_lines, max_bytes)
        return _around(head, marker(text[len(head) :]))
    if keep == "tail":
        tail = _tail(text, max_lines, max_bytes)
        return _around("", marker(text[: len(text) - len(tail)]), tail)
    # Each end gets half the budget (the head the larger half of an odd one), then what one end
    # leaves unused goes to the other: few long lines at one end, many short ones at the other.
    head = _head(text, (max_lines + 1) // 2, (max_bytes + 1) // 2)
    tail = _tail(text[len(head) :], max_lines - count_lines(head), max_bytes - _size(head))
    head = _head(
        text[: len(text) - len(tail)], max_lines - count_lines(tail), max_bytes - _size(tail)
    )
    return _around(head, marker(text[len(head) : len(text) - len(tail)]), tail)


@lash.hookimpl
def project_tool_result(
    session: lash.SessionView, call: lash.ToolCall, result: lash.ToolResult
) -> str | None:
    """The result cut to this session's budget for its tool, or ``None`` when it fits."""
    max_bytes, max_lines, keep = session.options(BudgetOptions).for_tool(call.name)
    return project(result.content, max_bytes=max_bytes, max_lines=max_lines, keep=keep)
