"""Hash-chained, optionally signed traces of what every node of a run did.

Each event carries the hash of the one before it (the first, a hash of the trace id), and its own
hash over its canonical JSON, so changing, dropping, reordering or moving an event between traces
breaks the chain at that event. The file's ``head`` commits to the chain's end (the number of events
and the last hash), so dropping or re-hashing the last event is caught too, and a trace with no
event is not a run. A trace file is written in one canonical form (sorted keys, two-space indent),
and verification also requires the file's bytes to be exactly that form, so a change to any byte of
the file is caught, whitespace included. A finished trace can be signed with HMAC-SHA256 over the
whole file as written (its canonical text with the signature's value left empty).

Reading is strict: a file is checked against the schema before anything is hashed, with no
coercion and no defaults (an ``index`` written as ``true``, ``2.0`` or ``"3"``, a deleted
``"model": null`` or a timing written as a string is "tampered", naming the field). Reading is
bounded: JSON nested deeper than :data:`MAX_DEPTH`, with an integer beyond I-JSON's exact range
(:data:`MAX_SAFE_INTEGER`), ``NaN`` or ``Infinity``, or a lone surrogate in a string is
*unreadable* (its own verdict, not "tampered").

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
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from redgraph.errors import ConfigError, InputError

FORMAT = "redgraph-trace"
# 4: the signature is an HMAC over the whole file as written (its canonical text with the signature's
#    value left empty), so no byte of it, types included, can change under a valid signature;
# 3: events, digests and the signature's message are hashed over RFC 8785 (JCS) canonical JSON, so
#    any JCS implementation re-hashes an event; 2: the head commits to the chain's end, and the
#    signature covers the head and key id. Versions 1 and 2 hashed json.dumps(sort_keys) text.
VERSION = 4
KEY_ENV = "REDGRAPH_TRACE_KEY"
MAX_DEPTH = 64  # JSON nesting a trace may have (events hold small JSON outputs)
MAX_INT_DIGITS = 40
MAX_SAFE_INTEGER = 2**53 - 1  # I-JSON (RFC 7493): integers every JSON reader holds exactly
_EVENT_START = "    {"  # in the canonical layout, each event opens on a line of exactly this


HEX64 = r"^[0-9a-f]{64}$"
Hex64 = Annotated[str, StringConstraints(pattern=HEX64)]


def _a_float(value: Any) -> Any:
    """Timings are written as JSON floats (``0.25``, ``1.0``); an integer or a string there is an edit."""
    if type(value) is not float:
        raise ValueError(f"a timing must be a JSON float such as 1.0, got {type(value).__name__}")
    return value


def _a_moment(value: str) -> str:
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {value[:60]!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"the time {value[:60]!r} has no time zone")
    return value


Timing = Annotated[float, BeforeValidator(_a_float)]
Moment = Annotated[str, AfterValidator(_a_moment)]


class _Strict(BaseModel):
    """A part of a trace file, read strictly: no coercion (``1`` is not ``true``, ``"3"`` or ``2.0``),
    no unknown key, and, when read as written (validation context ``{"as_written": True}``), no
    missing key either: a default is filled in only when code builds the model, never when a file
    is read, so deleting ``"model": null`` is an edit like any other."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, json_schema_serialization_defaults_required=True)

    @model_validator(mode="before")
    @classmethod
    def _every_key_written(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and info.context and info.context.get("as_written"):
            missing = [name for name in cls.model_fields if name not in data and not cls._may_omit(name, data)]
            if missing:
                raise ValueError(f"the key {missing[0]!r} is missing")
        return data

    @classmethod
    def _may_omit(cls, name: str, data: dict) -> bool:
        return False


class ModelRef(_Strict):
    """Which model produced an event, by id and by digest of its weights."""

    id: str
    weights_digest: str | None = None


class TraceEvent(_Strict):
    """One step of a run. ``hash`` covers every other field, ``prev_hash`` included."""

    index: Annotated[int, Field(ge=0)]
    node: str
    kind: str
    time: Moment
    inputs_digest: Hex64
    outputs: dict[str, Any]
    model: ModelRef | None = None
    config: dict[str, Any] = {}
    timings: dict[str, Timing] = {}
    prev_hash: Hex64
    hash: Hex64


class Signature(_Strict):
    algorithm: Literal["hmac-sha256"] = "hmac-sha256"
    key_id: str | None = None
    value: Hex64


class ChainHead(_Strict):
    """Where the chain ends: how many events it holds and the last one's hash."""

    events: Annotated[int, Field(ge=0)]
    last_hash: Hex64


class TraceFile(_Strict):
    """The trace file: this model's JSON Schema is the published schema (``trace.schema.json``).

    Version 1 files (written before the head existed) are still read; their end is not protected."""

    model_config = ConfigDict(title="redgraph trace")
    format: Literal["redgraph-trace"] = FORMAT
    version: Annotated[int, Field(ge=1, le=VERSION)] = VERSION
    trace_id: str
    head: ChainHead | None = None
    events: list[TraceEvent]
    signature: Signature | None = None

    @classmethod
    def _may_omit(cls, name: str, data: dict) -> bool:
        return name == "head" and data.get("version") == 1 and type(data.get("version")) is int


def parse_trace(data: Any) -> TraceFile:
    """A trace file's parsed JSON as a :class:`TraceFile`, read strictly (:class:`_Strict`).

    Raises:
        InputError: naming the first field that is missing, unknown, of another type or out of range.
    """
    try:
        return TraceFile.model_validate(data, strict=True, context={"as_written": True})
    except ValidationError as exc:
        raise TraceShapeError(exc) from exc


class TraceShapeError(InputError):
    """Parsed JSON that is not a trace file as redgraph writes it; ``index`` is the first bad
    event's index when the fault is inside an event."""

    def __init__(self, error: ValidationError) -> None:
        first = error.errors()[0]
        location = first["loc"]
        self.index = location[1] if len(location) > 1 and location[0] == "events" and isinstance(location[1], int) \
            else None
        where = ".".join(map(str, location)) or "the top level"
        super().__init__(f"not a redgraph trace: {first['msg']} at {where}")


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
    fields = {
        "index": index,
        "node": node,
        "kind": kind,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds"),
        "inputs_digest": digest(inputs),
        "outputs": json.loads(canonical(outputs)),
        "model": model.model_dump() if model is not None else None,
        "config": json.loads(canonical(config or {})),
        "timings": {k: float(v) for k, v in (timings or {}).items()},
        "prev_hash": prev_hash if prev_hash is not None else _genesis(trace_id),
    }
    fields["hash"] = _event_hash(fields)
    return fields


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


def read_json(text: str) -> Any:
    """``text`` parsed as JSON, bounded: nesting up to :data:`MAX_DEPTH`, integers up to
    :data:`MAX_INT_DIGITS` digits.

    Raises:
        InputError: the text is not JSON, or goes beyond a bound (the message says which).
    """
    depth = deepest = 0
    in_string = escaped = False
    for char in text:  # one pass, before the recursive parser sees it
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                raise InputError(f"the JSON is nested more than {MAX_DEPTH} levels deep; a redgraph trace is not")
        elif char in "]}":
            depth -= 1

    def bounded_int(digits: str) -> int:
        if len(digits.lstrip("-")) > MAX_INT_DIGITS:
            raise InputError(f"the JSON holds an integer of {len(digits.lstrip('-'))} digits, more than the "
                             f"{MAX_INT_DIGITS} a redgraph trace uses")
        value = int(digits)
        if abs(value) > MAX_SAFE_INTEGER:
            raise InputError(f"the JSON holds the integer {digits[:60]}, beyond +-(2^53 - 1) that every JSON reader "
                             "holds exactly (I-JSON); a redgraph trace writes none")
        return value

    def finite_float(digits: str) -> float:
        value = float(digits)
        if not math.isfinite(value):
            raise InputError(f"the JSON number {digits[:60]} is beyond a float's range")
        return value

    def no_constant(name: str) -> None:
        raise InputError(f"the JSON holds {name}, which is not JSON (RFC 8259); a redgraph trace writes none")

    try:
        data = json.loads(text, parse_int=bounded_int, parse_float=finite_float, parse_constant=no_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"not JSON: {exc}") from exc
    except InputError:
        raise
    except (RecursionError, ValueError) as exc:  # a bound json itself enforces
        raise InputError(f"the JSON cannot be read safely: {exc}") from exc
    check_json_values(data)
    return data


def check_json_values(data: Any) -> None:
    """Raise InputError unless ``data`` is JSON every reader agrees on: strings without lone surrogates
    (they cannot be written as UTF-8), string keys, finite floats, integers within I-JSON's range, and
    nothing but dicts, lists, strings, numbers, booleans and null."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            _check_text(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InputError(f"a JSON object key must be a string, got {type(key).__name__} {key!r:.60}")
                _check_text(key)
                stack.append(item)
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if abs(value) > MAX_SAFE_INTEGER:
                raise InputError(f"the integer {str(value)[:60]} is beyond +-(2^53 - 1) that every JSON reader holds "
                                 "exactly (I-JSON)")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise InputError(f"{value} is not a JSON number")
        else:
            raise InputError(f"a {type(value).__name__} is not JSON data; pass dicts, lists, strings, numbers, "
                             "booleans and null")


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"the JSON string {text[:60]!r} holds a lone surrogate ({exc.reason} at {exc.start}); "
                         "it cannot be written as UTF-8") from None


MAX_TRACE_BYTES = 64 * 1024 * 1024


def read_trace_file(path: str | os.PathLike[str]) -> str:
    """The text of a trace file: a regular file of at most ``MAX_TRACE_BYTES``, in UTF-8.

    Raises:
        InputError: the path is missing, not a regular file (a pipe or device), too large, or not UTF-8.
    """
    from redgraph.data.files import read_regular_file

    data = read_regular_file(path, max_bytes=MAX_TRACE_BYTES, what="trace file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"trace file {os.fspath(path)[:200]!r} is not UTF-8 text ({exc}); pass a trace redgraph wrote") from exc


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


def json_schema() -> dict:
    """The published JSON Schema of trace files as redgraph writes them (every key present)."""
    return TraceFile.model_json_schema(mode="serialization")
