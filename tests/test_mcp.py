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
            tools = {tool.name for tool in (await client.list_tools()).tools}
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
            return tools, answer, missing, intact, changed, nowhere

    tools, answer, missing, intact, changed, nowhere = anyio.run(session)
    assert {"ask_image", "verify_trace"} <= tools
    assert not answer.is_error and answer.structured_content["answer"] == example["answer"]
    assert Path(answer.structured_content["trace"]).parent == tmp_path
    assert missing.is_error and "nope.png' does not exist" in missing.content[0].text
    assert intact.structured_content["ok"] is True
    assert changed.structured_content["ok"] is False and changed.structured_content["first_bad_event"] == 0
    assert nowhere.is_error and "no trace file" in nowhere.content[0].text
