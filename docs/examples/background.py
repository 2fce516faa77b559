"""A plugin contributing a background process kind, a tool that starts it, and the hooks that
hear it finish: a report the agent asks for in one turn and reads in a later one."""

import logging

import attrs

import lash

log = logging.getLogger("background")


@attrs.frozen
class ReportRequest:
    """What to write a report about."""

    topic: str
    sections: int = 3


@attrs.frozen
class Report:
    topic: str
    summary: str


async def write_report(context: lash.ProcessContext, request: ReportRequest) -> Report:
    """Write a report, section by section (safe to run again after a crash)."""
    for section in range(1, request.sections + 1):
        context.raise_if_cancelled()  # a cancelled report stops between sections
        await context.emit({"section": section, "of": request.sections})  # progress
    return Report(request.topic, f"{request.sections} sections on {request.topic}")


@lash.hookimpl
def register_process_kinds(register: lash.RegisterProcessKind) -> None:
    register(
        "report",
        write_report,
        recovery=lash.RecoveryDisposition.RERUNNABLE,
        timeout=600,
        max_attempts=3,
    )


@lash.hookimpl
def register_tools(register: lash.RegisterTool) -> None:
    async def start_report(topic: str, context: lash.ToolContext) -> str:
        """Start writing a report on a topic in the background; it arrives as a new message."""
        # Written in the turn's commit; the key makes a retried call start nothing new.
        record = await context.processes.start(
            "report", ReportRequest(topic), key=f"{context.session_id}:report:{topic}"
        )
        return f"Report {record.id} is {record.status}."

    register(start_report)


@lash.hookimpl
def before_turn(turn: lash.TurnView) -> lash.StartProcess | None:
    """``/report TOPIC`` starts a report without asking the model."""
    if not turn.input.startswith("/report "):
        return None
    topic = turn.input.removeprefix("/report ").strip()
    return lash.StartProcess(
        "report", ReportRequest(topic), key=f"{turn.session.id}:report:{topic}"
    )


@lash.hookimpl
def render_process_result(process: lash.ProcessRecord) -> str | None:
    if process.kind != "report":
        return None  # another plugin's process: the next plugin (or the kernel) renders it
    if process.status == "succeeded":
        return f"The report on {process.result['topic']} is ready: {process.result['summary']}."
    return f"The report could not be written ({process.status}): {process.error}"


@lash.hookimpl
def process_finished(process: lash.ProcessRecord) -> None:
    log.info("process %s (%s) finished: %s", process.id, process.kind, process.status)
