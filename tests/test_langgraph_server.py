"""langgraph.json names a graph the LangGraph server can load: import it the way the server does
(file path and attribute) and run it with JSON input and context."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from redgraph.errors import ConfigError
from redgraph.examples import example_path, load_examples
from redgraph.graphs.context import CONTEXT_SETTINGS, RunContext, resolve_context
from redgraph.models import load_lvlm
from redgraph.models.images import image_data_url, load_image
from redgraph.trace import Trace

ROOT = Path(__file__).resolve().parents[1]


def served_graph(context=None):
    """What the server builds: langgraph.json names a graph factory, called with the run's runtime."""
    from types import SimpleNamespace

    config = json.loads((ROOT / "langgraph.json").read_text())
    assert config["dependencies"] == ["."]
    [(name, target)] = config["graphs"].items()
    path, attribute = target.rsplit(":", 1)
    spec = importlib.util.spec_from_file_location(f"served_{name}", ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, attribute)(SimpleNamespace(context=context))


def test_the_factory_names_a_misspelt_context_setting_the_server_would_drop():
    with pytest.raises(ConfigError, match="unknown context settings \\['rationale_weigth'\\]"):
        served_graph({"rationale_weigth": 0.5})
    assert hasattr(served_graph({"rationale_weight": 0.5}), "invoke")  # known settings pass


def test_the_named_graph_runs_with_json_input_and_context():
    graph = served_graph()
    example = load_examples()[0]
    state = graph.invoke({"image_input": str(example_path(example)), "question": example["question"]},
                         context={"rationale_weight": 1.0, "rounds": 1, "max_new_tokens": 8})
    assert state["answer"]["text"] and state["verdict"] in ("accept", "revise", "unsure")
    assert [e["node"] for e in state["trace"]][:3] == ["receive", "reason", "critique"]
    trace = Trace.from_events(state["trace_id"], state["trace"])  # checks the chain
    assert trace.events[0].config["rounds"] == 1
    # A data URL works too, and no context means the defaults (the embedded model).
    picture = load_image(example_path(example))
    again = graph.invoke({"image_input": image_data_url(picture), "question": example["question"]})
    assert again["image"]["sha256"] == state["image"]["sha256"]


def test_bad_context_is_named():
    with pytest.raises(ConfigError, match="unknown context settings \\['lambda'\\]"):
        resolve_context({"lambda": 2})
    with pytest.raises(ConfigError, match="RunContext or a JSON object"):
        resolve_context(["rounds", 2])


def test_every_run_setting_can_be_given_as_json():
    settings = {f for f in RunContext.__dataclass_fields__} - {"answerer", "reasoner", "critic", "should_stop", "images"}
    assert settings <= set(CONTEXT_SETTINGS)


def test_the_server_can_build_the_input_output_and_context_schemas():
    # LangGraph Studio and the server's /assistants/{id}/schemas build these with pydantic, which
    # refuses typing.TypedDict before Python 3.12.
    graph = served_graph()
    state = graph.get_input_jsonschema()
    assert {"image_input", "question"} <= set(state["properties"])
    assert "answer" in graph.get_output_jsonschema()["properties"]
    context = graph.get_context_jsonschema()
    assert set(context["properties"]) == set(CONTEXT_SETTINGS)
    assert context["properties"]["on_exhausted"]["enum"] == ["image_only", "best_supported", "human_review"]


def test_answer_tokens_stream_on_the_plain_custom_mode():
    from langgraph.checkpoint.memory import InMemorySaver

    graph = served_graph().builder.compile(checkpointer=InMemorySaver())  # the server adds its own checkpointer
    example = load_examples()[0]
    start = {"image_input": str(example_path(example)), "question": example["question"]}
    config = {"configurable": {"thread_id": "streamed"}}
    chunks = list(graph.stream(start, config, context={"max_new_tokens": 4, "rounds": 1},
                               stream_mode=["custom", "updates"]))
    streamed = [payload["token"] for mode, payload in chunks if mode == "custom"]
    # every answer token, on the plain stream mode (no stream_subgraphs): the nodes are top-level;
    # the end-of-turn token that ends the answer is not part of its text, and is not streamed
    answer = graph.get_state(config).values["answer"]
    special = set(load_lvlm().tokenizer.all_special_ids)
    assert streamed and streamed == [t["text"] for t in answer["tokens"] if t["token_id"] not in special]
    assert "".join(streamed).strip() == answer["text"]
