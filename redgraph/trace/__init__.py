"""Auditable traces: hash-chained events, HMAC signatures, canonical JSON files with a schema."""

from redgraph.trace.chain import KEY_ENV, Trace, Verification, digest, verify_data, verify_text
from redgraph.trace.schema import (
    ModelRef,
    TraceEvent,
    TraceFile,
    TraceShapeError,
    json_schema,
    parse_trace,
    read_json,
    read_trace_file,
)

__all__ = [
    "KEY_ENV",
    "ModelRef",
    "Trace",
    "TraceEvent",
    "TraceFile",
    "TraceShapeError",
    "Verification",
    "digest",
    "json_schema",
    "parse_trace",
    "read_json",
    "read_trace_file",
    "verify_data",
    "verify_text",
]
