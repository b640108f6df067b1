"""A trace as OpenTelemetry spans, named and attributed after the GenAI semantic conventions.

One root span for the run (``invoke_workflow redgraph``) and one child per event: the reasoner and
the critic as agents (``invoke_agent``), the answerer as a model call (``chat``, with the model and
its output token count), and the graph's own steps (``receive``, ``decide``) as tools
(``execute_tool``). Everything redgraph records beyond the conventions is under ``redgraph.``:
each event's index, hashes and inputs digest (so a span can be matched to the signed chain), its
outputs and settings as JSON, and the weights digest of its model.

:func:`span_records` needs nothing installed; :func:`export_spans` sends the spans through an
OpenTelemetry tracer provider (``pip install opentelemetry-sdk``).
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from redgraph.errors import ConfigError
from redgraph.trace.chain import Trace
from redgraph.trace.schema import TraceEvent, TraceFile

# node -> (gen_ai.operation.name, agent or tool name)
_OPERATIONS = {
    "receive": ("execute_tool", "receive"),
    "reason": ("invoke_agent", "reasoner"),
    "critique": ("invoke_agent", "critic"),
    "decide": ("execute_tool", "decide"),
    "answer": ("chat", None),
}


def _nanoseconds(iso: str) -> int:
    moment = datetime.datetime.fromisoformat(iso)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def provider_name(model_id: str) -> str:
    """``gen_ai.provider.name`` of a model: ``openai`` for the official client's models, ``langchain``
    for a LangChain chat model, and ``redgraph`` for a local model that redgraph runs itself."""
    prefix, _, rest = model_id.partition(":")
    return prefix if rest and prefix in ("openai", "langchain") else "redgraph"


def _event_record(event: TraceEvent, trace_id: str) -> dict[str, Any]:
    operation, name = _OPERATIONS.get(event.node, ("execute_tool", event.node))
    end = _nanoseconds(event.time)
    start = end - int(event.timings.get("seconds", 0.0) * 1e9)
    attributes: dict[str, Any] = {"gen_ai.operation.name": operation}
    if operation == "invoke_agent":
        attributes["gen_ai.agent.name"] = name
    elif operation == "execute_tool":
        attributes["gen_ai.tool.name"] = name
    if event.model is not None:
        attributes["gen_ai.request.model"] = event.model.id
        attributes["gen_ai.provider.name"] = provider_name(event.model.id)
        if event.model.weights_digest:
            attributes["redgraph.model.weights_digest"] = event.model.weights_digest
    if operation == "chat" and isinstance(event.outputs.get("tokens"), list):
        attributes["gen_ai.usage.output_tokens"] = len(event.outputs["tokens"])
        prompt, rationales = event.outputs.get("prompt_tokens"), event.outputs.get("rationale_prompt_tokens")
        if isinstance(prompt, int) and isinstance(rationales, list):  # every branch's prompt was read
            attributes["gen_ai.usage.input_tokens"] = prompt + sum(n for n in rationales if isinstance(n, int))
    attributes.update({
        "redgraph.trace_id": trace_id,
        "redgraph.node": event.node,
        "redgraph.kind": event.kind,
        "redgraph.event.index": event.index,
        "redgraph.event.hash": event.hash,
        "redgraph.event.prev_hash": event.prev_hash,
        "redgraph.event.inputs_digest": event.inputs_digest,
        "redgraph.outputs": json.dumps(event.outputs, sort_keys=True, ensure_ascii=False),
        "redgraph.config": json.dumps(event.config, sort_keys=True, ensure_ascii=False),
    })
    span_name = f"{operation} {name or (event.model.id if event.model else event.node)}"
    return {"name": span_name, "start_time_ns": start, "end_time_ns": max(start, end), "attributes": attributes}


def span_records(trace: Trace | TraceFile) -> list[dict[str, Any]]:
    """The run's spans as plain records: the root first (``parent`` None), then one per event
    (``parent`` 0, the root's position), each with name, start and end in ns since the epoch, and
    attributes."""
    file = trace.to_file() if isinstance(trace, Trace) else trace
    if not file.events:
        return []
    children = [_event_record(event, file.trace_id) | {"parent": 0} for event in file.events]
    last = file.events[-1]
    root = {
        "name": "invoke_workflow redgraph",
        "start_time_ns": min(child["start_time_ns"] for child in children),
        "end_time_ns": max(child["end_time_ns"] for child in children),
        "attributes": {"gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": "redgraph",
                       "redgraph.trace_id": file.trace_id,
                       "redgraph.events": len(file.events), "redgraph.last_hash": last.hash},
        "parent": None,
    }
    return [root, *children]


def export_spans(trace: Trace | TraceFile, tracer_provider=None) -> int:
    """Emit the run's spans through OpenTelemetry (the global tracer provider, or the one given);
    returns how many. Needs ``opentelemetry-api`` (and an SDK with an exporter to send them)."""
    try:
        from opentelemetry import trace as otel_trace
    except ImportError as exc:
        raise ConfigError(f"exporting spans needs OpenTelemetry ({exc}); install it: pip install opentelemetry-sdk") from exc
    tracer = otel_trace.get_tracer("redgraph", tracer_provider=tracer_provider)
    records = span_records(trace)
    if not records:
        return 0
    root_record, *children = records
    root = tracer.start_span(root_record["name"], start_time=root_record["start_time_ns"],
                             attributes=root_record["attributes"])
    context = otel_trace.set_span_in_context(root)
    for record in children:
        span = tracer.start_span(record["name"], context=context, start_time=record["start_time_ns"],
                                 attributes=record["attributes"])
        span.end(end_time=record["end_time_ns"])
    root.end(end_time=root_record["end_time_ns"])
    return len(records)
