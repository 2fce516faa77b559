"""Structured output: what ``session.turn(text, output=...)`` asks for, and how an answer is
checked against it.

The turn (:mod:`lash._kernel.turn`) runs the loop: it asks the model (with a JSON-schema
response format for a provider that supports one, else with a final-answer tool), checks the
answer here, and sends the problems back until the answer validates or the retries run out.

Answers are validated with ``jsonschema`` (the reference implementation of JSON Schema for
Python: every draft up to 2020-12, and *all* the errors of an answer with their paths, which is
what the model needs to fix it in one go), then, for an attrs class, structured into an instance
with lash's converter (which also runs the class's own validators).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from lash._contract.modeloptions import ModelOptions
from lash._contract.providers import OutputSpec, ToolSpec
from lash._contract.serialization import structure, to_data, validation_problems
from lash.errors import SessionError

if TYPE_CHECKING:
    import jsonschema

#: The name of the final-answer tool offered to providers without a JSON-schema response format.
FINAL_TOOL = "final_result"
#: How many times an invalid answer is sent back by default (``output_retries``).
DEFAULT_RETRIES = 2
#: The key a non-object schema is wrapped under (tools and response formats take objects).
_WRAP_KEY = "result"

_NAME = re.compile(r"[^a-zA-Z0-9_-]+")
_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n(.*)\n```$", re.DOTALL)


def _path(error: jsonschema.ValidationError) -> str:
    path = "$"
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


class Output:
    """A turn's structured-output request: the spec, the class answers are structured into
    (``None``: plain JSON values), and the attempts made so far."""

    def __init__(self, spec: OutputSpec, cls: type | None, retries: int) -> None:
        import jsonschema  # here: only turns that ask for structured output pay for it

        self.cls = cls
        self.retries = retries
        self.attempts = 0
        # Tools and response formats take an object: any other schema is wrapped in one.
        self.wrapped = spec.schema.get("type") != "object"
        schema = dict(spec.schema)
        if self.wrapped:
            schema = {
                "type": "object",
                "properties": {_WRAP_KEY: schema},
                "required": [_WRAP_KEY],
                "additionalProperties": False,
            }
        self.spec = attrs.evolve(spec, schema=schema)
        validator_class = jsonschema.validators.validator_for(spec.schema)
        self._validator = validator_class(dict(spec.schema))

    @property
    def tool(self) -> ToolSpec:
        """The final-answer tool: its arguments are the answer."""
        description = self.spec.description or "Give the final answer."
        return ToolSpec(
            FINAL_TOOL,
            f"{description} Call this tool once, when you have the answer; its arguments are "
            "the answer.",
            self.spec.schema,
        )

    def tool_options(self, options: ModelOptions) -> ModelOptions:
        """Model options for a final-answer-tool call: some tool must be called (unless the
        host chose otherwise), since a text answer would not be the output."""
        if options.tool_choice is not None:
            return options
        return attrs.evolve(options, tool_choice="required")

    def check_text(self, text: str) -> tuple[Any, list[str]]:
        """The value of a text answer (JSON, possibly in a Markdown code fence), or problems."""
        body = text.strip()
        fenced = _FENCE.match(body)
        if fenced:
            body = fenced.group(1).strip()
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            return None, [f"$: the answer is not JSON ({exc}); answer with JSON only"]
        return self.check(data)

    def check(self, data: Any) -> tuple[Any, list[str]]:
        """``(value, [])`` for a valid answer (unwrapped, structured), else ``(None, problems)``."""
        if self.wrapped:
            if not isinstance(data, Mapping) or _WRAP_KEY not in data:
                return None, [f"$: expected an object with the answer under {_WRAP_KEY!r}"]
            data = data[_WRAP_KEY]
        errors = sorted(self._validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        if errors:
            return None, [f"{_path(e)}: {e.message}" for e in errors]
        if self.cls is None:
            return data, []
        try:
            return structure(data, self.cls), []
        except Exception as exc:  # the class's own validators (ranges, formats...)
            return None, validation_problems(exc, data, "$") or [f"$: {exc}"]

    def restore(self, stored: Any) -> Any:
        """A stored output (plain data) as the turn asks for it now (for a resubmitted turn)."""
        if stored is None or self.cls is None:
            return stored
        return structure(stored, self.cls)


def answer_text(value: Any) -> str:
    """The turn's final text for an accepted output: the answer as JSON."""
    return json.dumps(to_data(value), ensure_ascii=False)


def feedback(problems: list[str], *, tool: bool) -> str:
    """What the model is told about an invalid answer."""
    lines = "\n".join(f"- {p}" for p in problems)
    again = (
        f"Call {FINAL_TOOL} again with arguments that match its schema."
        if tool
        else "Answer again with only a JSON value that matches the required schema."
    )
    return f"The answer does not match the required schema:\n{lines}\n{again}"


NOT_CALLED = (
    f"$: no final answer was given; give it by calling the {FINAL_TOOL} tool (its arguments "
    "are the answer)"
)


def build_output(value: Any, retries: int, *, session_id: str) -> Output:
    """The :class:`Output` for ``session.turn(output=value)``: an attrs class, a JSON schema
    dict, or a :class:`lash.OutputSpec`.

    :raises SessionError: for anything else, a schema that is not a valid JSON schema, a class
        no schema can express, or a negative ``retries``; the message names the session.
    """
    import jsonschema

    from lash._tools.tool import json_schema

    def refuse(problem: str) -> SessionError:
        return SessionError(
            f"session {session_id!r}: turn(output=...): {problem}", session_id=session_id
        )

    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise refuse(f"output_retries must be an int >= 0, got {retries!r}")
    cls: type | None = None
    if isinstance(value, OutputSpec):
        spec = value
    elif isinstance(value, type) and attrs.has(value):
        try:
            schema = json_schema(value)
        except TypeError as exc:
            raise refuse(str(exc)) from None
        doc = schema.get("description", "")
        spec, cls = (
            OutputSpec(schema, name=_NAME.sub("_", value.__name__)[:64], description=doc),
            value,
        )
    elif isinstance(value, Mapping):
        title = value.get("title")
        name = _NAME.sub("_", title)[:64] if isinstance(title, str) and title else "output"
        description = value.get("description")
        spec = OutputSpec(
            dict(value), name=name, description=description if isinstance(description, str) else ""
        )
    else:
        raise refuse(
            f"expected an attrs class, a JSON schema dict or lash.OutputSpec, got {value!r}"
        )
    try:
        jsonschema.validators.validator_for(spec.schema).check_schema(dict(spec.schema))
    except jsonschema.SchemaError as exc:
        raise refuse(f"not a valid JSON schema: {exc.message}") from None
    return Output(spec, cls, retries)
