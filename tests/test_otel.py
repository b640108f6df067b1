"""A trace as OpenTelemetry spans after the GenAI semantic conventions."""

from __future__ import annotations

import json

import pytest

from redgraph.trace import ModelRef, Trace
from redgraph.trace.otel import export_spans, span_records


def _run() -> Trace:
    trace = Trace("run-7")
    trace.append("receive", "input", inputs={}, outputs={"question": "q", "image": {"sha256": "ab", "path": "p"}},
                 timings={"seconds": 0.01})
    trace.append("reason", "rationale", inputs={}, outputs={"rationales": ["r"]}, model=ModelRef(id="openai:gpt-4o"),
                 timings={"seconds": 0.5})
    trace.append("critique", "verdict", inputs={}, outputs={"verdict": "accept"}, model=ModelRef(id="local"),
                 timings={"seconds": 0.2})
    trace.append("decide", "decision", inputs={}, outputs={"outcome": "accepted"})
    trace.append("answer", "answer", inputs={}, outputs={"text": "red", "tokens": [{"t": 1}, {"t": 2}],
                                                         "prompt_tokens": 40, "rationale_prompt_tokens": [12, 9]},
                 model=ModelRef(id="redgraph-embedded", weights_digest="d" * 8), config={"rationale_weight": 1.0},
                 timings={"seconds": 0.3})
    return trace


def test_each_event_is_a_span_named_after_the_genai_conventions():
    trace = _run()
    root, *spans = span_records(trace)
    assert root["name"] == "invoke_workflow redgraph" and root["attributes"]["redgraph.last_hash"] == trace.last_hash
    assert [s["name"] for s in spans] == ["execute_tool receive", "invoke_agent reasoner", "invoke_agent critic",
                                         "execute_tool decide", "chat redgraph-embedded"]
    reason, answer = spans[1]["attributes"], spans[4]["attributes"]
    assert reason["gen_ai.operation.name"] == "invoke_agent" and reason["gen_ai.agent.name"] == "reasoner"
    assert reason["gen_ai.request.model"] == "openai:gpt-4o" and reason["gen_ai.provider.name"] == "openai"
    assert answer["gen_ai.usage.output_tokens"] == 2 and answer["redgraph.model.weights_digest"] == "d" * 8
    # required or recommended by the conventions (issue 38): who served each model, what was read, the workflow
    assert answer["gen_ai.provider.name"] == "redgraph" and answer["gen_ai.usage.input_tokens"] == 40 + 12 + 9
    assert root["attributes"]["gen_ai.workflow.name"] == "redgraph"
    assert json.loads(answer["redgraph.config"]) == {"rationale_weight": 1.0}
    # each span points back into the signed chain
    assert [s["attributes"]["redgraph.event.hash"] for s in spans] == [e.hash for e in trace.events]
    for span in spans:
        assert root["start_time_ns"] <= span["start_time_ns"] <= span["end_time_ns"] <= root["end_time_ns"]
    assert spans[1]["end_time_ns"] - spans[1]["start_time_ns"] == 500_000_000


def test_spans_export_through_the_opentelemetry_sdk():
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert export_spans(_run(), provider) == 6
    finished = exporter.get_finished_spans()
    root = next(s for s in finished if s.parent is None)
    assert root.name == "invoke_workflow redgraph"
    children = [s for s in finished if s.parent is not None]
    assert len(children) == 5 and all(s.parent.span_id == root.context.span_id for s in children)
    assert {s.attributes["gen_ai.operation.name"] for s in children} == {"execute_tool", "invoke_agent", "chat"}


def test_the_spans_command_prints_the_records(tmp_path):
    from typer.testing import CliRunner

    from redgraph.cli import app

    path = _run().save(tmp_path / "run.json")
    result = CliRunner().invoke(app, ["trace", "spans", str(path)])
    assert result.exit_code == 0, result.output
    assert [r["name"] for r in json.loads(result.stdout)][:2] == ["invoke_workflow redgraph", "execute_tool receive"]
