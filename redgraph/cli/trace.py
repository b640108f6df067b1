"""``redgraph trace verify`` / ``show`` / ``spans`` / ``keygen`` / ``attest`` / ``verify-attestation``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from redgraph.cli.app import console, fail, out, trace_app
from redgraph.errors import ConfigError, InputError, RedgraphError

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


def _trace_file(file: Path):
    """``(text, TraceFile)`` of a trace file; InputError when it cannot be read as a trace."""
    from redgraph.trace import TraceShapeError, parse_trace, read_json, read_trace_file

    text = read_trace_file(file)
    try:
        return text, parse_trace(read_json(text))
    except TraceShapeError as exc:
        raise InputError(f"{file}: {exc}") from exc


@trace_app.command("show")
def trace_show(file: Annotated[Path, typer.Argument(help="A trace file written by redgraph.")]) -> None:
    """Print a trace's events, one row each."""
    try:
        _, trace = _trace_file(file)
    except RedgraphError as exc:
        fail(exc)
    table = Table("#", "node", "kind", "time", "outputs", title=f"trace {escape(trace.trace_id)}")
    for event in trace.events:
        table.add_row(str(event.index), event.node, event.kind, event.time, escape(json.dumps(event.outputs)[:120]))
    out.print(table)


@trace_app.command("keygen")
def trace_keygen(
    prefix: Annotated[Path, typer.Argument(help="Writes PREFIX.key (private, only you may read it) and PREFIX.pub.")],
) -> None:
    """Make an Ed25519 key pair for signing attestations; give PREFIX.pub to whoever verifies."""
    from redgraph.data.files import write_file
    from redgraph.trace.attest import generate_ed25519_key

    private_path, public_path = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    try:
        for path in (private_path, public_path):
            if path.exists():
                raise ConfigError(f"{path} exists; choose another prefix (a key is never overwritten)")
        private_pem, public_pem = generate_ed25519_key()
        write_file(private_path, private_pem, what="private key", mode=0o600, exclusive=True)
        write_file(public_path, public_pem, what="public key", exclusive=True)
    except RedgraphError as exc:
        fail(exc)
    out.print(f"private key: {escape(str(private_path))}\npublic key:  {escape(str(public_path))}")


@trace_app.command("attest")
def trace_attest(
    file: Annotated[Path, typer.Argument(help="A trace file written by redgraph.")],
    ed25519_key: Annotated[Optional[Path], typer.Option(help="Ed25519 private key (PEM), e.g. from "
                                                              "`redgraph trace keygen`.")] = None,
    hmac_key: Annotated[Optional[str], typer.Option(help="Also (or only) sign with this shared secret.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Default: FILE.intoto.json.")] = None,
) -> None:
    """Write the trace's in-toto statement (chain head, image and answer digests) in a signed DSSE envelope."""
    from redgraph.data.files import read_regular_file, write_file
    from redgraph.trace import verify_text
    from redgraph.trace.attest import Ed25519Signer, HmacSigner, attest

    try:
        text, _ = _trace_file(file)
        chain = verify_text(text)
        if not chain.ok:
            raise InputError(f"{file} does not verify ({chain.reason}); an attestation would vouch for a changed trace")
        signers = []
        if ed25519_key is not None:
            signers.append(Ed25519Signer(read_regular_file(ed25519_key, max_bytes=65536, what="private key")))
        if hmac_key is not None:
            signers.append(HmacSigner(hmac_key))
        if not signers:
            raise ConfigError("give --ed25519-key (anyone can verify with the public key) and/or --hmac-key")
        envelope = attest(text, signers)
        target = output or file.with_name(file.name + ".intoto.json")
        write_file(target, json.dumps(envelope, indent=2) + "\n", what="attestation")
    except RedgraphError as exc:
        fail(exc)
    out.print(f"[green]attested[/]: {escape(str(target))} (signed by {', '.join(s['keyid'] for s in envelope['signatures'])})")


@trace_app.command("verify-attestation")
def trace_verify_attestation(
    file: Annotated[Path, typer.Argument(help="A trace file written by redgraph.")],
    attestation: Annotated[Path, typer.Argument(help="Its DSSE envelope, from `redgraph trace attest`.")],
    public_key: Annotated[Optional[list[Path]], typer.Option(help="Ed25519 public key (PEM); repeatable.")] = None,
    hmac_key: Annotated[Optional[str], typer.Option(help="Shared secret of an HMAC signature.")] = None,
) -> None:
    """Exit 0 when a signature verifies with a given key, the statement is this trace's and the trace
    is intact; 1 when not; 2 when a file cannot be read."""
    from redgraph.data.files import read_regular_file
    from redgraph.trace import read_json, read_trace_file
    from redgraph.trace.attest import verify_attestation

    try:
        text = read_trace_file(file)
        envelope = read_json(read_regular_file(attestation, max_bytes=16 * 2**20, what="attestation").decode())
        keys = [read_regular_file(path, max_bytes=65536, what="public key") for path in public_key or []]
        result = verify_attestation(envelope, text, public_keys=keys,
                                    hmac_keys={"hmac": hmac_key} if hmac_key is not None else None)
    except (RedgraphError, UnicodeDecodeError) as exc:
        fail(exc if isinstance(exc, RedgraphError) else InputError(f"{attestation} is not UTF-8 text"))
    if result.ok:
        out.print(f"[green]ok[/]: {escape(str(file))}: {escape(result.reason)}")
        return
    console.print(f"[red]not verified[/]: {escape(str(file))}: {escape(result.reason)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code=1)


@trace_app.command("spans")
def trace_spans(file: Annotated[Path, typer.Argument(help="A trace file written by redgraph.")]) -> None:
    """Print the run as OpenTelemetry span records (GenAI semantic conventions) in JSON."""
    from redgraph.trace.otel import span_records

    try:
        _, trace = _trace_file(file)
    except RedgraphError as exc:
        fail(exc)
    out.print_json(json.dumps(span_records(trace)))
