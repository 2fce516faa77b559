"""A plugin contributing a background process kind and watching processes finish."""

import logging

import lash

log = logging.getLogger("background")


async def reindex(session_id: str | None, payload: dict[str, object]) -> dict[str, object]:
    """Rebuild the search index of a session (safe to run again after a crash)."""
    return {"reindexed": session_id, "documents": len(payload.get("documents", []))}


@lash.hookimpl
def register_process_kinds(register: lash.RegisterProcessKind) -> None:
    register("reindex", reindex, recovery=lash.RecoveryDisposition.RERUNNABLE)


@lash.hookimpl
def process_finished(process: lash.ProcessRecord) -> None:
    log.info("process %s (%s) finished: %s", process.id, process.kind, process.status)
