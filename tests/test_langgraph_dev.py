"""The served graph under the real LangGraph API server (``langgraph dev``, from
``langgraph-cli[inmem]``), driven by the official ``langgraph_sdk`` client as a LangGraph user
would: the schemas Studio shows, a run with its answer tokens on the plain ``custom`` stream, and a
human-review pause resumed without sending the context again, each with the same result as the
same run in-process."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BARS = ROOT / "redgraph" / "examples" / "bars.png"
QUESTION = "What is the value of the blue bar?"
# The embedded model writes no claim in the step-by-step style, so the critic rejects every round:
# with one round and human review, the run always pauses.
REVIEW = {"styles": ["step_by_step"], "rounds": 1, "on_exhausted": "human_review"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    command = shutil.which("langgraph", path=str(Path(os.sys.executable).parent)) or shutil.which("langgraph")
    if command is None:
        pytest.fail("the langgraph command is missing: install the test extras (langgraph-cli[inmem])")
    port = _free_port()
    home = tmp_path_factory.mktemp("langgraph-home")
    env = {**os.environ, "REDGRAPH_HOME": str(home), "HF_HUB_OFFLINE": "1", "LANGGRAPH_CLI_NO_ANALYTICS": "1"}
    # The repository's langgraph.json with its paths made absolute, run from a temporary folder: the
    # in-memory server keeps its state in .langgraph_api/ where it runs.
    config = json.loads((ROOT / "langgraph.json").read_text())
    config["dependencies"] = [str(ROOT)]
    config["graphs"] = {name: str(ROOT / target.removeprefix("./")) for name, target in config["graphs"].items()}
    (home / "langgraph.json").write_text(json.dumps(config))
    log = open(home / "server.log", "w")
    process = subprocess.Popen([command, "dev", "--port", str(port), "--no-browser", "--no-reload", "--config",
                                str(home / "langgraph.json")], cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("langgraph dev did not start:\n" + (home / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        from langgraph_sdk import get_sync_client

        with get_sync_client(url=url) as client:
            [assistant] = client.assistants.search(graph_id="redgraph")
            yield client, assistant["assistant_id"]
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _in_process(tmp_path, resume=None, **settings):
    from redgraph.graphs import ask, make_context

    context = make_context(None, **settings)
    result = ask(BARS, QUESTION, context, checkpoint=tmp_path / "c.sqlite", thread_id="local")
    if resume is not None:
        result = ask(BARS, QUESTION, context, checkpoint=tmp_path / "c.sqlite", thread_id="local", resume=resume)
    return result


def test_the_server_shows_the_graphs_schemas(server):
    client, assistant = server
    schemas = client.assistants.get_schemas(assistant)
    assert set(schemas["input_schema"]["properties"]) == {"image_input", "question", "page"}  # what a caller gives
    assert set(schemas["input_schema"]["required"]) == {"image_input", "question"}
    assert {"model", "rounds", "on_exhausted", "rationale_weight"} <= set(schemas["context_schema"]["properties"])


def test_a_run_streams_its_answer_tokens_on_the_custom_mode(server, tmp_path):
    client, assistant = server
    thread = client.threads.create()["thread_id"]
    parts = list(client.runs.stream(thread, assistant, input={"image_input": str(BARS), "question": QUESTION},
                                    stream_mode=["custom", "values"]))
    tokens = [p.data for p in parts if p.event == "custom"]
    final = [p.data for p in parts if p.event == "values"][-1]
    local = _in_process(tmp_path)
    assert final["answer"]["text"] == local.answer and final["outcome"] == local.outcome
    assert "".join(t["token"] for t in tokens).strip() == local.answer
    assert tokens and all({"changed_by_rationale", "rationale_shift"} <= set(t) for t in tokens)


def test_a_review_pause_resumes_through_the_server_with_the_runs_own_settings(server, tmp_path):
    client, assistant = server
    thread = client.threads.create()["thread_id"]
    client.runs.wait(thread, assistant, input={"image_input": str(BARS), "question": QUESTION}, context=REVIEW)
    state = client.threads.get_state(thread)
    [interrupt] = [i for task in state["tasks"] for i in task["interrupts"]]
    assert state["next"] == ["decide"] and "resume_with" in interrupt["value"]
    done = client.runs.wait(thread, assistant, command={"resume": {"image_only": True}})  # no context sent again
    local = _in_process(tmp_path, resume={"image_only": True}, styles=("step_by_step",), rounds=1,
                        on_exhausted="human_review")
    assert done["outcome"] == local.outcome == "human_review"
    assert done["answer"]["text"] == local.answer and "human_reviewed" in done["flags"]


def test_a_misspelt_context_setting_fails_the_run_naming_it(server):
    client, assistant = server
    thread = client.threads.create()["thread_id"]
    result = client.runs.wait(thread, assistant, input={"image_input": str(BARS), "question": QUESTION},
                              context={"rationale_weigth": 0.5}, raise_error=False)
    [run] = client.runs.list(thread)
    assert run["status"] == "error", run
    assert "unknown context settings ['rationale_weigth']" in json.dumps(result), result
