"""Process kinds: what ``register_process_kinds`` registers, built (and checked) at registration.

A kind is an ``async def run(context, payload) -> result``; its payload and result types are
read from ``run``'s annotations (an attrs class, a primitive, a container of them; no
annotation or ``Any``: raw JSON), so a payload is validated when the process is *started*,
not when a worker gets to it, and hosts can read both JSON schemas.
"""

from __future__ import annotations

import inspect
import json
import math
import typing
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from lash._contract.annotations import resolve_here
from lash._contract.serialization import from_data, to_data
from lash._contract.types import RecoveryDisposition
from lash._tools.tool import json_schema
from lash.errors import ProcessError, ValidationError

__all__ = ["ProcessKind", "build_process_kind", "json_data", "process_data"]

_NONE = type(None)


@attrs.frozen
class ProcessKind:
    """A registered process kind: ``run``, its recovery disposition, timeout (seconds, ``None``:
    none), the runs a rerunnable process gets (``max_attempts``), and its payload and result
    types with their JSON schemas."""

    name: str
    run: Callable[..., Awaitable[Any]]
    plugin: str
    recovery: RecoveryDisposition = RecoveryDisposition.OWNER_BOUND
    timeout: float | None = None
    max_attempts: int = 3
    payload_type: Any = Any
    result_type: Any = Any
    payload_schema: dict[str, Any] = attrs.field(factory=dict)
    result_schema: dict[str, Any] = attrs.field(factory=dict)
    description: str = ""

    __module__ = "lash"

    def payload_data(self, payload: Any) -> Any:
        """``payload`` in JSON form, checked against the payload type.

        :raises ProcessError: naming the kind and each field that does not fit.
        """
        tp = self.payload_type
        if tp is _NONE and payload is not None:
            raise ProcessError(
                f"process kind {self.name!r} takes no payload (None), got {payload!r}",
                kind=self.name,
            )
        if tp not in (Any, _NONE) and not (isinstance(tp, type) and isinstance(payload, tp)):
            try:
                payload = from_data(payload, tp, what=f"payload of process kind {self.name!r}")
            except ValidationError as exc:
                raise ProcessError(str(exc), kind=self.name) from None
        try:
            return json_data(payload)
        except (TypeError, ValueError) as exc:
            raise ProcessError(
                f"the payload of process kind {self.name!r} cannot be stored as JSON: {exc}",
                kind=self.name,
            ) from None

    def structured_payload(self, data: Any) -> Any:
        """The stored payload ``data`` as ``run`` takes it (an instance of the payload type)."""
        if self.payload_type is Any or self.payload_type is _NONE:
            return data
        return from_data(data, self.payload_type, what=f"payload of process kind {self.name!r}")

    def result_data(self, value: Any) -> Any:
        """What ``run`` returned, in JSON form. :raises TypeError, ValueError: not storable as
        JSON."""
        return json_data(value)


def json_data(value: Any) -> Any:
    """``value`` as plain data (:func:`to_data`), checked to be JSON: a process's payload,
    result or progress.

    NaN and the infinities are not JSON: every store kept them as Python writes them
    (``NaN``), text that no other JSON reader takes (lash serve's clients, a browser).

    :raises TypeError, ValueError: for what is not JSON data (as :func:`json.dumps`)."""
    data = to_data(value)
    json.dumps(data, allow_nan=False)
    return data


def process_data(process_id: str, kind: str, what: str, value: Any) -> Any:
    """:func:`json_data` of ``value``, the ``what`` (``result``, ``progress``) of a process.

    :raises ProcessError: naming the process and its kind, for what is not JSON data."""
    try:
        return json_data(value)
    except (TypeError, ValueError) as exc:
        raise ProcessError(
            f"process {process_id!r} ({kind}): its {what} cannot be stored as JSON: {exc}",
            process_id=process_id,
            kind=kind,
        ) from None


def _types_of(name: str, run: Callable[..., Any]) -> tuple[Any, Any]:
    """The payload and result types of ``run`` (``Any`` where it has no annotation)."""
    try:
        params = list(inspect.signature(run).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [
        p
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    required = [p for p in positional[2:] if p.default is inspect.Parameter.empty]
    if len(positional) < 2 or required:
        raise TypeError(
            f"process kind {name!r}: run must take (context, payload), got "
            f"{getattr(run, '__name__', run)}{inspect.signature(run)}"
        )
    try:
        hints = typing.get_type_hints(run)
    except Exception as exc:  # an unresolvable forward reference: say which kind
        raise TypeError(f"process kind {name!r}: cannot resolve run's type hints: {exc}") from None
    return hints.get(positional[1].name, Any), hints.get("return", Any)


def _schema(name: str, what: str, tp: Any) -> dict[str, Any]:
    if tp is _NONE or tp is None:
        return {"type": "null"}
    try:
        return json_schema(tp)
    except TypeError as exc:
        raise TypeError(f"process kind {name!r}: {what}: {exc}") from None


def build_process_kind(
    name: str,
    run: Callable[..., Any],
    plugin: str,
    *,
    recovery: RecoveryDisposition,
    timeout: float | None,
    max_attempts: int,
) -> ProcessKind:
    """Check a registration and build the kind. :raises TypeError, ValueError: naming the kind
    and what is wrong."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"process kind must be a non-empty string, got {name!r}")
    if not inspect.iscoroutinefunction(run):
        raise TypeError(f"process kind {name!r}: run must be an async function")
    if not isinstance(recovery, RecoveryDisposition):
        raise TypeError(
            f"process kind {name!r}: recovery must be a lash.RecoveryDisposition, got {recovery!r}"
        )
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not timeout > 0
        or math.isinf(timeout)
    ):
        raise ValueError(
            f"process kind {name!r}: timeout must be a positive number of seconds, got {timeout!r}"
        )
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValueError(
            f"process kind {name!r}: max_attempts must be an int >= 1, got {max_attempts!r}"
        )
    payload_type, result_type = _types_of(name, run)
    doc = inspect.getdoc(run) or ""
    return ProcessKind(
        name=name,
        run=run,
        plugin=plugin,
        recovery=recovery,
        timeout=float(timeout) if timeout is not None else None,
        # Only a rerunnable process runs more than once.
        max_attempts=max_attempts if recovery is RecoveryDisposition.RERUNNABLE else 1,
        payload_type=payload_type,
        result_type=result_type,
        payload_schema=_schema(name, "payload", payload_type),
        result_schema=_schema(name, "result", result_type),
        description=doc.split("\n\n", 1)[0].replace("\n", " "),
    )


resolve_here(globals())
