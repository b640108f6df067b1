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


@trace_app.command("verify")
def trace_verify(
    file: Annotated[Path, typer.Argument(help="A trace file written by redgraph.")],
    key: Annotated[Optional[str], typer.Option(help="HMAC key; default: the REDGRAPH_TRACE_KEY variable.")] = None,
) -> None:
    """Exit 0 when the trace is intact (and, with a key, its signature valid); else 1, naming the first bad event."""
    import os

    from redgraph.trace import KEY_ENV, verify_text

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(RedgraphError(f"cannot read trace file {file}: {exc}"))
    result = verify_text(text, key if key is not None else os.environ.get(KEY_ENV))
    if result.ok:
        out.print(f"[green]ok[/]: {escape(str(file))}: {escape(result.reason)}")
        return
    console.print(f"[red]tampered[/]: {escape(str(file))}: {escape(result.reason)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code=1)


@trace_app.command("show")
def trace_show(file: Annotated[Path, typer.Argument(help="A trace file written by redgraph.")]) -> None:
    """Print a trace's events, one row each."""
    from pydantic import ValidationError

    from redgraph.trace import TraceFile

    try:
        trace = TraceFile.model_validate_json(file.read_bytes())
    except (OSError, ValidationError) as exc:
        fail(RedgraphError(f"cannot read trace file {file}: {exc}"))
    table = Table("#", "node", "kind", "time", "outputs", title=f"trace {escape(trace.trace_id)}")
    for event in trace.events:
        table.add_row(str(event.index), event.node, event.kind, event.time, escape(json.dumps(event.outputs)[:120]))
    out.print(table)
