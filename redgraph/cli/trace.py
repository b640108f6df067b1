"""``redgraph trace verify`` / ``show``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from redgraph.cli.app import console, fail, out, trace_app
from redgraph.errors import RedgraphError

UNREADABLE_EXIT = 3  # the file is not a trace that can be read at all (not JSON, nested too deep, ...)


@trace_app.command("verify")
def trace_verify(
    file: Annotated[Path, typer.Argument(help="A trace file written by redgraph.")],
    key: Annotated[Optional[str], typer.Option(help="HMAC key; default: the REDGRAPH_TRACE_KEY variable.")] = None,
) -> None:
    """Exit 0 when the trace is intact (and, with a key, its signature valid); 1 when it was changed,
    naming the first bad event; 3 when it cannot be read as a trace at all; 2 when the file cannot be read."""
    import os

    from redgraph.trace import KEY_ENV, read_trace_file, verify_text

    try:
        text = read_trace_file(file)
    except RedgraphError as exc:
        fail(exc)
    result = verify_text(text, key if key is not None else os.environ.get(KEY_ENV))
    if result.ok:
        out.print(f"[green]ok[/]: {escape(str(file))}: {escape(result.reason)}")
        return
    verdict = "tampered" if result.readable else "unreadable"
    console.print(f"[red]{verdict}[/]: {escape(str(file))}: {escape(result.reason)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code=1 if result.readable else UNREADABLE_EXIT)


@trace_app.command("show")
def trace_show(file: Annotated[Path, typer.Argument(help="A trace file written by redgraph.")]) -> None:
    """Print a trace's events, one row each."""
    from pydantic import ValidationError

    from redgraph.trace import TraceFile, read_json, read_trace_file

    try:
        trace = TraceFile.model_validate(read_json(read_trace_file(file)))
    except RedgraphError as exc:
        fail(exc)
    except ValidationError as exc:
        fail(RedgraphError(f"{file} is not a redgraph trace: {exc.errors()[0]['msg']}"))
    table = Table("#", "node", "kind", "time", "outputs", title=f"trace {escape(trace.trace_id)}")
    for event in trace.events:
        table.add_row(str(event.index), event.node, event.kind, event.time, escape(json.dumps(event.outputs)[:120]))
    out.print(table)
