"""The trace file's format: its schema (pydantic models, published as ``trace.schema.json``) and how
a file is read.

Reading is strict: a file is checked against the schema before anything is hashed, with no
coercion and no defaults (an ``index`` written as ``true``, ``2.0`` or ``"3"``, a deleted
``"model": null`` or a timing written as a string is "tampered", naming the field). Reading is
bounded: JSON nested deeper than :data:`MAX_DEPTH`, with an integer beyond I-JSON's exact range
(:data:`MAX_SAFE_INTEGER`), ``NaN`` or ``Infinity``, or a lone surrogate in a string is
*unreadable* (its own verdict, not "tampered"). Hashing, signing and verifying are in
:mod:`redgraph.trace.chain`.
"""

from __future__ import annotations

import datetime
import json
import math
import os
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

from redgraph.errors import InputError

FORMAT = "redgraph-trace"
# 4: the signature is an HMAC over the whole file as written (its canonical text with the signature's
#    value left empty), so no byte of it, types included, can change under a valid signature;
# 3: events, digests and the signature's message are hashed over RFC 8785 (JCS) canonical JSON, so
#    any JCS implementation re-hashes an event; 2: the head commits to the chain's end, and the
#    signature covers the head and key id. Versions 1 and 2 hashed json.dumps(sort_keys) text.
VERSION = 4
MAX_DEPTH = 64  # JSON nesting a trace may have (events hold small JSON outputs)
MAX_INT_DIGITS = 40
MAX_SAFE_INTEGER = 2**53 - 1  # I-JSON (RFC 7493): integers every JSON reader holds exactly

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


def json_schema() -> dict:
    """The published JSON Schema of trace files as redgraph writes them (every key present)."""
    return TraceFile.model_json_schema(mode="serialization")
