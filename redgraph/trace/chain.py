"""Hash-chained, optionally signed traces of what every node of a run did.

Each event carries the hash of the one before it (the first, a hash of the trace id), and its own
hash over its canonical JSON, so changing, dropping, reordering or moving an event between traces
breaks the chain at that event. The file's ``head`` commits to the chain's end (the number of events
and the last hash), so dropping or re-hashing the last event is caught too, and a trace with no
event is not a run. A trace file is written in one canonical form (sorted keys, two-space indent),
and verification also requires the file's bytes to be exactly that form, so a change to any byte of
the file is caught, whitespace included. A finished trace can be signed with HMAC-SHA256 over the
whole file as written (its canonical text with the signature's value left empty).

The file's format, its strict schema and bounded reading are in :mod:`redgraph.trace.schema`.

Example:
    >>> trace = Trace("run-1")
    >>> _ = trace.append("reasoner", "rationale", inputs={"question": "q"}, outputs={"text": "r"})
    >>> verify_text(trace.to_json()).ok
    True
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from redgraph.errors import ConfigError, InputError
from redgraph.trace.schema import (
    FORMAT,
    VERSION,
    ChainHead,
    ModelRef,
    Signature,
    TraceEvent,
    TraceFile,
    TraceShapeError,
    check_json_values,
    parse_trace,
    read_json,
)

KEY_ENV = "REDGRAPH_TRACE_KEY"
_EVENT_START = "    {"  # in the canonical layout, each event opens on a line of exactly this


def canonical(data: Any, version: int = VERSION) -> str:
    """The one JSON text a value is hashed as: RFC 8785 (JCS) from version 3, before it Python's
    ``json.dumps`` with sorted keys and no spaces."""
    if version >= 3:
        import rfc8785

        try:
            return rfc8785.dumps(data).decode("utf-8")
        except rfc8785.IntegerDomainError as exc:
            raise InputError(f"a trace value holds an integer beyond what JSON numbers carry exactly ({exc}); "
                             "write it as a string") from exc
        except rfc8785.FloatDomainError as exc:
            raise InputError(f"a trace value cannot be written as JSON ({exc}); replace NaN or infinity") from exc
        except rfc8785.CanonicalizationError as exc:
            raise InputError(f"a trace value is not JSON data ({exc}); pass strings, numbers, lists and dicts "
                             "with string keys") from exc
    try:
        return json.dumps(data, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError as exc:
        raise InputError(f"a trace value cannot be written as JSON ({exc}); replace NaN or infinity") from exc
    except TypeError as exc:
        raise InputError(f"a trace value is not JSON data ({exc}); pass strings, numbers, lists and dicts") from exc


def digest(data: Any, version: int = VERSION) -> str:
    """sha256 of a value's canonical JSON."""
    return hashlib.sha256(canonical(data, version).encode()).hexdigest()


def _genesis(trace_id: str) -> str:
    return hashlib.sha256(f"{FORMAT}:{trace_id}".encode()).hexdigest()


def _event_hash(fields: dict, version: int = VERSION) -> str:
    return digest({k: v for k, v in fields.items() if k != "hash"}, version)


def _signature_value(key: bytes, trace_id: str, last_hash: str, *, events: int | None = None,
                     key_id: str | None = None, algorithm: str = "hmac-sha256", version: int = VERSION,
                     data: dict | None = None) -> str:
    """HMAC over what a signature vouches for. From version 4, ``data`` (the parsed file): its canonical
    text with the signature's value left empty. Before: version 2 and 3 the id, event count, last hash,
    algorithm and key id; version 1 (``events=None``) the id and last hash."""
    if version >= 4:
        if data is None:
            raise ValueError("a version 4 signature covers the file: pass its data")
        blank = {**data, "signature": {**data["signature"], "value": ""}}
        return hmac.new(key, b"redgraph-trace-signature\n" + file_text(blank).encode(), hashlib.sha256).hexdigest()
    if events is None:
        message = f"{trace_id}:{last_hash}"
    else:
        message = canonical({"format": FORMAT, "version": version, "trace_id": trace_id, "events": events,
                             "last_hash": last_hash, "algorithm": algorithm, "key_id": key_id}, version)
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def file_text(data: dict) -> str:
    """The canonical layout of a trace file: sorted keys, two-space indent, UTF-8 as is, a final newline."""
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def chain_event(
    trace_id: str,
    prev_hash: str | None,
    index: int,
    node: str,
    kind: str,
    *,
    inputs: Any,
    outputs: dict[str, Any],
    model: ModelRef | None = None,
    config: dict[str, Any] | None = None,
    timings: dict[str, float] | None = None,
) -> dict:
    """One event as plain JSON data, chained after ``prev_hash`` (None: the trace's first event).

    Graph nodes keep events as plain dicts in their state; :class:`Trace` wraps the same function.
    """
    written = {"outputs": canonical(outputs), "config": canonical(config or {})}
    fields = {
        "index": index,
        "node": node,
        "kind": kind,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds"),
        "inputs_digest": digest(inputs),
        "outputs": json.loads(written["outputs"]),
        "model": model.model_dump() if model is not None else None,
        "config": json.loads(written["config"]),
        "timings": {k: float(v) for k, v in (timings or {}).items()},
        "prev_hash": prev_hash if prev_hash is not None else _genesis(trace_id),
    }
    fields["hash"] = _hash_with(fields, written)
    return fields


def _hash_with(fields: dict, written: dict[str, str]) -> str:
    """:func:`_event_hash` of ``fields``, reusing the canonical text of the values already written
    (``written``: key -> canonical text). JCS writes an object as its members in key order, each
    value in its own canonical form, so the text is the same; the large outputs are then
    canonicalised once instead of twice (RFC 8785 in pure Python is most of a node's trace cost)."""
    keys = sorted(k for k in fields if k != "hash")
    if not all(key.isascii() for key in keys):  # JCS orders by UTF-16 units; ASCII keys sort alike
        return _event_hash(fields)
    members = [f"{canonical(key)}:{written[key] if key in written else canonical(fields[key])}" for key in keys]
    return hashlib.sha256(("{" + ",".join(members) + "}").encode()).hexdigest()


class Trace:
    """An append-only trace being written during a run."""

    def __init__(self, trace_id: str) -> None:
        if not isinstance(trace_id, str) or not trace_id.strip():
            raise InputError(f"a trace id must be a non-empty string, got {trace_id!r}")
        self.trace_id = trace_id
        self.events: list[TraceEvent] = []
        self.signature: Signature | None = None

    @property
    def last_hash(self) -> str:
        return self.events[-1].hash if self.events else _genesis(self.trace_id)

    def append(self, node: str, kind: str, **details: Any) -> TraceEvent:
        """Record one step. ``details`` are :func:`chain_event`'s keywords: ``inputs`` (stored as its
        digest only), ``outputs`` (in full), and optionally ``model``, ``config``, ``timings``."""
        if self.signature is not None:
            raise InputError(f"trace {self.trace_id!r} is signed and closed; start a new trace to record more")
        fields = chain_event(self.trace_id, self.last_hash, len(self.events), node, kind, **details)
        event = TraceEvent.model_validate(fields)
        self.events.append(event)
        return event

    @classmethod
    def from_events(cls, trace_id: str, events: list[dict]) -> Trace:
        """A trace holding ``events`` (e.g. from a graph's state), each validated against the schema;
        :func:`verify_text` on :meth:`to_json` checks the chain."""
        trace = cls(trace_id)
        for event in events:
            try:
                trace.events.append(TraceEvent.model_validate(event, strict=True, context={"as_written": True}))
            except ValidationError as exc:
                raise TraceShapeError(exc) from exc
        return trace

    def sign(self, key: bytes | str, *, key_id: str | None = None) -> Signature:
        """Close the trace with an HMAC-SHA256 signature over the whole file it writes."""
        key_bytes = key.encode() if isinstance(key, str) else key
        if not key_bytes:
            raise ConfigError(f"the signing key is empty; set {KEY_ENV} or pass a key")
        if not self.events:
            raise InputError(f"trace {self.trace_id!r} has no event; an empty trace is not a run and cannot be signed")
        data = self.to_file().model_dump(mode="json")
        data["signature"] = {"algorithm": "hmac-sha256", "key_id": key_id, "value": ""}
        value = _signature_value(key_bytes, self.trace_id, self.last_hash, data=data)
        self.signature = Signature(key_id=key_id, value=value)
        return self.signature

    def to_file(self) -> TraceFile:
        return TraceFile(trace_id=self.trace_id, head=ChainHead(events=len(self.events), last_hash=self.last_hash),
                         events=list(self.events), signature=self.signature)

    def to_json(self) -> str:
        """The canonical file text (what :func:`verify_text` accepts byte for byte)."""
        return file_text(self.to_file().model_dump(mode="json"))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the canonical text atomically (a crash leaves the old file or the new one), as a
        regular file only (:func:`redgraph.data.files.write_file`)."""
        from redgraph.data.files import write_file

        return Path(write_file(path, self.to_json(), what="trace"))


@dataclass(frozen=True)
class Verification:
    """What :func:`verify_text` found. ``first_bad`` is the index of the first bad event, if any;
    ``readable`` is False when the text could not be read as a trace at all (not JSON, too deep,
    numbers too long), as opposed to a trace that reads but was changed."""

    ok: bool
    reason: str
    first_bad: int | None = None
    events: int = 0
    signed: bool = False
    signature_checked: bool = False
    readable: bool = True


def verify_text(text: str, key: bytes | str | None = None) -> Verification:
    """Check a trace file's text: schema, canonical bytes, hash chain and head, and (with a key) signature."""
    try:
        data = read_json(text)
    except InputError as exc:
        position = exc.__cause__.pos if isinstance(exc.__cause__, json.JSONDecodeError) else None
        return Verification(False, f"unreadable: {exc}", None if position is None else _event_at(text, position),
                            readable=False)
    return _verify(data, key, text)


def verify_data(data: Any, key: bytes | str | None = None) -> Verification:
    """Check a trace already parsed from JSON (e.g. received in an HTTP response): schema, hash
    chain, and (with a key) signature. Every event's content is covered by its hash; only the file's
    layout is not checked, as there is no file."""
    try:
        check_json_values(data)
    except InputError as exc:
        return Verification(False, f"unreadable: {exc}", readable=False)
    return _verify(data, key, None)


def _verify(data: Any, key: bytes | str | None, text: str | None) -> Verification:
    try:
        trace = parse_trace(data)
    except TraceShapeError as exc:
        return Verification(False, str(exc), exc.index)
    count = len(trace.events)
    if not trace.events:
        return Verification(False, "the trace holds no event: an empty trace is not a run")
    if trace.version >= 2 and trace.head is None:
        return Verification(False, "the trace has no head (event count and last hash); it was cut or edited", None,
                            count)
    previous = _genesis(trace.trace_id)
    for position, (event, written) in enumerate(zip(trace.events, data["events"])):
        if event.index != position:
            return Verification(False, f"event {position} says it is event {event.index}", position, count)
        if event.prev_hash != previous:
            return Verification(False, f"event {position} does not follow the event before it (chain broken)", position,
                                count)
        if _event_hash(written, trace.version) != event.hash:  # over the event as written, not as read
            return Verification(False, f"event {position} ({event.node}/{event.kind}) was changed: its hash does not match",
                                position, count)
        previous = event.hash
    if trace.head is not None and (trace.head.events, trace.head.last_hash) != (count, previous):
        return Verification(False, f"the head says {trace.head.events} events ending in {trace.head.last_hash[:12]}..., "
                                   f"the chain has {count} ending in {previous[:12]}...: events were dropped, added "
                                   "or re-hashed at the end", min(count, trace.head.events) - 1 if count else None, count)
    rewritten = file_text(data)
    if text is not None and rewritten != text:
        offset = next((i for i, (a, b) in enumerate(zip(text, rewritten)) if a != b), min(len(text), len(rewritten)))
        index = _event_at(text, offset)
        where = f"event {index}" if index is not None else "outside the events"
        return Verification(False, f"the file's bytes were changed at character {offset} ({where}): it is not in "
                                   "the canonical form redgraph writes", index, count)
    signed = trace.signature is not None
    if key is None:
        note = "; signed, but no key was given, so the signature was not checked" if signed else ""
        if trace.version < 2:
            note += "; a version 1 trace: its last event is not protected"
        return Verification(True, f"{count} events, chain intact{note}", None, count, signed)
    if not signed:
        return Verification(False, "a key was given but the trace is not signed", None, count)
    key_bytes = key.encode() if isinstance(key, str) else key
    expected = _signature_value(key_bytes, trace.trace_id, previous, key_id=trace.signature.key_id,
                                algorithm=trace.signature.algorithm, events=count if trace.version >= 2 else None,
                                version=trace.version, data=data)
    if not hmac.compare_digest(expected, trace.signature.value):
        return Verification(False, "the signature does not match (wrong key, or the trace was changed and re-chained)",
                            None, count, True)
    return Verification(True, f"{count} events, chain intact, signature valid", None, count, True, True)


def _event_at(text: str, offset: int) -> int | None:
    """The index of the event whose text holds ``offset`` in the canonical layout, else None."""
    position, count, in_events = 0, -1, False
    for line in text.split("\n"):
        if line == '  "events": [':
            in_events = True
        elif in_events and line in ("  ]", "  ],"):
            in_events = False
        elif in_events and line == _EVENT_START:
            count += 1
        position += len(line) + 1
        if offset < position:
            return count if in_events and count >= 0 else None
    return None
