"""Runs checkpointed in a real PostgreSQL server through LangGraph's PostgreSQL saver: a process
killed mid-run resumes in another, a human-review pause resumes with the person's choice, and a bad
URL is named (without its password). The server comes from tests/postgres_server.py."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from redgraph.errors import ConfigError
from redgraph.graphs import RunContext, ask
from tests.conftest import scene, tiny
from tests.test_graph import QUESTION, ScriptedCritic, ScriptedReasoner


@pytest.fixture
def image_path(tmp_path):
    path = tmp_path / "scene.png"
    scene().save(path)
    return path


def test_a_killed_run_resumes_from_postgres_in_another_process(postgres_url, image_path, tmp_path):
    root = Path(__file__).resolve().parent.parent
    calls = tmp_path / "calls.txt"
    thread = f"killed-{uuid.uuid4().hex}"
    args = [sys.executable, "-m", "tests.resume_script", postgres_url, str(image_path), str(calls)]
    killed = subprocess.run([*args, "kill", thread], cwd=root, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    finished = subprocess.run([*args, "finish", thread], cwd=root, capture_output=True, text=True, check=True)
    assert calls.read_text() == "reason\n"  # the reasoner ran once: the resumed run did not redo it
    assert json.loads(finished.stdout)["nodes"] == ["receive", "reason", "critique", "decide", "answer"]


def test_a_review_pause_resumes_from_postgres_as_from_sqlite(postgres_url, image_path, tmp_path):
    def context():
        return RunContext(answerer=tiny("llava_clip"), reasoner=ScriptedReasoner([["The circle is green."]]),
                          critic=ScriptedCritic({"The circle is green.": 0.2}), rounds=1,
                          on_exhausted="human_review", max_new_tokens=2)

    outcomes = []
    for checkpoint in (postgres_url, str(tmp_path / "c.sqlite")):
        thread = f"review-{uuid.uuid4().hex}"
        paused = ask(image_path, QUESTION, context(), checkpoint=checkpoint, thread_id=thread)
        assert paused.answer is None and paused.pending_review["rationales"] == ["The circle is green."]
        done = ask(image_path, QUESTION, context(), checkpoint=checkpoint, thread_id=thread,
                   resume={"use": [0]})
        again = ask(image_path, QUESTION, context(), checkpoint=checkpoint, thread_id=thread)  # finished: as it was
        assert again.answer == done.answer
        outcomes.append((done.outcome, done.answer, done.state["chosen"]))
    assert outcomes[0] == outcomes[1]


def test_a_bad_postgres_url_is_named_without_its_password(image_path, tmp_path):
    url = f"postgresql://someone:secret@/nodb?host={tmp_path}&port=1"
    with pytest.raises(ConfigError, match=r"cannot connect to the checkpoint database postgresql://someone:\*\*\*@") as caught:
        ask(image_path, QUESTION, RunContext(answerer=tiny("llava_clip"), reasoner=ScriptedReasoner([["x."]]),
                                             critic=ScriptedCritic({}), max_new_tokens=2), checkpoint=url)
    assert "secret" not in str(caught.value)
