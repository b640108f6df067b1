"""``redgraph mcp`` over stdio, driven by the official ``mcp`` client."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
import pytest

pytest.importorskip("mcp")
from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402

from redgraph.examples import example_path, load_examples  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_ask_image_and_verify_trace_over_stdio(tmp_path):
    example = load_examples()[0]
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "redgraph.cli", "mcp", "--trace-dir", str(tmp_path)], cwd=str(ROOT),
        env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "REDGRAPH_HOME": str(tmp_path / "home"),
             "PYTHONPATH": os.pathsep.join(sys.path)},
    )

    async def session():
        async with Client(params, read_timeout_seconds=120) as client:
            listed = {tool.name: tool for tool in (await client.list_tools()).tools}
            tools = set(listed)
            version = client.server_info.version
            too_many_rounds = await client.call_tool("ask_image", {"image": "x.png", "question": "What?",
                                                                   "rounds": 100000})
            answer = await client.call_tool("ask_image", {
                "image": str(example_path(example)), "question": example["question"],
                "rationale": "The red circle is left of the purple triangle."})
            missing = await client.call_tool("ask_image", {"image": str(tmp_path / "nope.png"), "question": "What?"})
            trace = answer.structured_content["trace"]
            intact = await client.call_tool("verify_trace", {"trace": trace})
            text = Path(trace).read_text()
            data = json.loads(text)
            data["events"][0]["outputs"]["question"] = "Something else?"
            changed = await client.call_tool("verify_trace", {"trace": json.dumps(data)})
            nowhere = await client.call_tool("verify_trace", {"trace": str(tmp_path / "none.json")})
            unreadable = await client.call_tool("verify_trace", {"trace": '{"trace_id": Infinity}'})
            return tools, answer, missing, intact, changed, nowhere, listed, version, too_many_rounds, unreadable

    tools, answer, missing, intact, changed, nowhere, listed, version, too_many_rounds, unreadable = anyio.run(session)
    schema = listed["ask_image"].input_schema["properties"]
    assert schema["rounds"]["maximum"] == 5 and schema["rounds"]["minimum"] == 1
    assert schema["rationale_weight"]["maximum"] == 10
    assert all(schema[name].get("description") for name in ("image", "question", "rationale", "rationale_weight",
                                                              "rounds"))
    assert all(p.get("description") for p in listed["verify_trace"].input_schema["properties"].values())
    assert version == __import__("redgraph").__version__
    assert too_many_rounds.is_error and "rounds" in too_many_rounds.content[0].text
    assert unreadable.structured_content["readable"] is False and "Infinity" in unreadable.structured_content["reason"]
    assert {"ask_image", "verify_trace"} <= tools
    assert not answer.is_error and answer.structured_content["answer"] == example["answer"]
    assert Path(answer.structured_content["trace"]).parent == tmp_path
    assert missing.is_error and "nope.png' does not exist" in missing.content[0].text
    assert intact.structured_content["ok"] is True
    assert changed.structured_content["ok"] is False and changed.structured_content["first_bad_event"] == 0
    assert nowhere.is_error and "no trace file" in nowhere.content[0].text


def test_verify_for_agent_answers_unreadable_traces_with_their_reason(tmp_path):
    from redgraph.errors import InputError
    from redgraph.tools.summary import verify_for_agent

    for text, words in (('{"a": Infinity}', "Infinity"), ('{"a": "\\ud800"}', "lone surrogate"),
                        ('{"a": 9007199254740993}', "2^53"), ("{" * 100, "nested"), ('{"events": 1', "not JSON")):
        found = verify_for_agent(text)
        assert found["ok"] is False and found["readable"] is False and words in found["reason"], (text, found)
    shaped = verify_for_agent('{"trace_id": "t", "events": "x"}')
    assert shaped["ok"] is False and shaped["readable"] is True and "not a redgraph trace" in shaped["reason"]
    for bad in ("", "a\x00b", str(tmp_path / "none.json"), str(tmp_path)):
        with pytest.raises(InputError):
            verify_for_agent(bad)
