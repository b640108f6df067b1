"""The rationale graph with a scripted reasoner and critic (and a tiny real answerer)."""

from __future__ import annotations

import json

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from redgraph.agents.critic import ClaimCheck, CriticReport, RationaleReview
from redgraph.agents.reasoner import Rationale
from redgraph.errors import ConfigError
from redgraph.graphs import RunContext, build_graph
from redgraph.models.images import image_sha256
from redgraph.trace import Trace, verify_text
from tests.conftest import scene, tiny

QUESTION = "What colour is the circle?"
DRAWN = """graph TD;
	__start__([<p>__start__</p>]):::first
	receive(receive)
	reason(reason)
	critique(critique)
	decide(decide)
	answer(answer)
	__end__([<p>__end__</p>]):::last
	__start__ --> receive;
	critique -.-> decide;
	critique -.-> reason;
	decide --> answer;
	reason --> critique;
	receive --> reason;
	answer --> __end__;
"""


class ScriptedReasoner:
    """Returns the next scripted list of rationale texts each round, recording the critiques it got."""

    def __init__(self, rounds: list[list[str]]):
        self.rounds, self.critiques = list(rounds), []

    def write(self, image, question, k=1, *, critique=None):
        self.critiques.append(critique)
        return [Rationale(text, "facts", "scripted") for text in self.rounds.pop(0)]


class ScriptedCritic:
    """Support per rationale text, from a table."""

    def __init__(self, support: dict[str, float]):
        self.support = support

    def review(self, image, question, rationales):
        reviews = tuple(
            RationaleReview(r, (ClaimCheck(r, self.support[r], self.support[r] >= 0.5),), (), self.support[r],
                            self.support[r] >= 0.5)
            for r in rationales
        )
        accepted = all(r.accepted for r in reviews)
        critique = "" if accepted else "; ".join(f'"{r.rationale}" is not supported' for r in reviews if not r.accepted)
        return CriticReport(reviews, "accept" if accepted else "revise", critique)


@pytest.fixture
def image_path(tmp_path):
    path = tmp_path / "scene.png"
    scene().save(path)
    return path


def _run(image_path, reasoner, critic, *, thread="t1", **settings):
    graph = build_graph(InMemorySaver())
    context = RunContext(answerer=tiny("llava_clip"), reasoner=reasoner, critic=critic, max_new_tokens=4, **settings)
    config = {"configurable": {"thread_id": thread}}
    start = {"trace_id": thread, "question": QUESTION,
             "image": {"sha256": image_sha256(scene()), "path": str(image_path)}}
    chunks = list(graph.stream(start, config, context=context, stream_mode=["custom", "updates"]))
    return graph, context, config, chunks


def _verified(state) -> Trace:
    trace = Trace.from_events(state["trace_id"], state["trace"])
    assert verify_text(trace.to_json()).ok
    return trace


def test_drawn_graph_snapshot():
    drawn = build_graph().get_graph().draw_mermaid()
    assert drawn.split("graph TD;\n", 1)[1].split("\tclassDef", 1)[0] == DRAWN.split("graph TD;\n", 1)[1]


def test_accepted_on_the_first_round(image_path):
    reasoner = ScriptedReasoner([["The circle is red."]])
    graph, _, config, chunks = _run(image_path, reasoner, ScriptedCritic({"The circle is red.": 0.9}))
    state = graph.get_state(config).values
    assert state["outcome"] == "accepted" and state["flags"] == [] and state["round"] == 1
    assert state["chosen"] == {"rationales": ["The circle is red."], "weights": [0.9]}
    # Support is an absolute weight: lambda (1.0) times the support, not a share of lambda.
    assert state["answer"]["rationales"] == ["The circle is red."]
    assert state["answer"]["rationale_lambdas"] == [pytest.approx(0.9, abs=1e-12)]
    assert [e["node"] for e in state["trace"]] == ["receive", "reason", "critique", "decide", "answer"]
    streamed = [payload["token"] for mode, payload in chunks if mode == "custom"]
    assert streamed == [t["text"] for t in state["answer"]["tokens"]]
    _verified(state)
    assert "bytes" not in repr(state)


def test_revision_passes_the_critique_back(image_path):
    reasoner = ScriptedReasoner([["The circle is green."], ["The circle is red."]])
    critic = ScriptedCritic({"The circle is green.": 0.1, "The circle is red.": 0.8})
    graph, _, config, _ = _run(image_path, reasoner, critic)
    state = graph.get_state(config).values
    assert reasoner.critiques == [None, '"The circle is green." is not supported']
    assert [h["verdict"] for h in state["history"]] == ["revise", "accept"]
    assert state["outcome"] == "accepted" and state["round"] == 2


@pytest.mark.parametrize(("policy", "chosen", "flag"), [
    ("image_only", [], "rationales_rejected_answered_from_image"),
    ("best_supported", ["The circle is blue."], "answered_with_unaccepted_rationale"),
])
def test_exhausted_rounds_apply_the_policy(image_path, policy, chosen, flag):
    reasoner = ScriptedReasoner([["The circle is green."], ["The circle is blue."]])
    critic = ScriptedCritic({"The circle is green.": 0.1, "The circle is blue.": 0.3})
    graph, _, config, _ = _run(image_path, reasoner, critic, on_exhausted=policy)
    state = graph.get_state(config).values
    assert state["outcome"] == policy and state["flags"] == [flag]
    assert state["chosen"]["rationales"] == chosen and state["answer"]["rationales"] == chosen
    assert len(state["history"]) == 2
    _verified(state)


def test_human_review_pauses_and_resumes(image_path):
    reasoner = ScriptedReasoner([["The circle is green."]])
    graph, context, config, chunks = _run(image_path, reasoner, ScriptedCritic({"The circle is green.": 0.1}),
                                          rounds=1, on_exhausted="human_review")
    paused = graph.get_state(config)
    assert paused.next == ("decide",) and paused.interrupts[0].value["rationales"] == ["The circle is green."]
    final = graph.invoke(Command(resume={"rationales": ["The circle is red."]}), config, context=context)
    assert final["outcome"] == "human_review" and final["flags"] == ["human_reviewed"]
    assert final["answer"]["rationales"] == ["The circle is red."]
    _verified(final)


def test_a_changed_image_is_refused(image_path):
    from redgraph.errors import InputError

    reasoner = ScriptedReasoner([["The circle is red."]])
    graph = build_graph()
    context = RunContext(answerer=tiny("llava_clip"), reasoner=reasoner, critic=ScriptedCritic({}))
    start = {"trace_id": "t", "question": QUESTION, "image": {"sha256": "0" * 64, "path": str(image_path)}}
    with pytest.raises(InputError, match="changed since this run started"):
        graph.invoke(start, context=context)


def test_bad_settings_are_named():
    with pytest.raises(ConfigError, match="'ask_a_friend'"):
        RunContext(answerer=None, reasoner=None, critic=None, on_exhausted="ask_a_friend")
    with pytest.raises(ConfigError, match="rounds"):
        RunContext(answerer=None, reasoner=None, critic=None, rounds=0)


def test_ask_checkpoints_to_sqlite_writes_the_trace_and_returns_finished_runs(image_path, tmp_path):
    from redgraph.graphs import ask

    context = RunContext(answerer=tiny("llava_clip"), reasoner=ScriptedReasoner([["The circle is red."]]),
                         critic=ScriptedCritic({"The circle is red.": 0.9}), max_new_tokens=3)
    tokens = []
    result = ask(image_path, QUESTION, context, checkpoint=tmp_path / "c.sqlite", thread_id="run-1",
                 trace_path=tmp_path / "trace.json", sign_key="k", on_token=tokens.append)
    assert result.outcome == "accepted" and result.rationales[0]["support"] == 0.9
    assert [t["token"] for t in tokens] == [t["text"] for t in result.state["answer"]["tokens"]]
    assert verify_text((tmp_path / "trace.json").read_text(), key="k").signature_checked
    # The same thread again: nothing re-runs (the scripted reasoner has no second round to give).
    again = ask(image_path, QUESTION, context, checkpoint=tmp_path / "c.sqlite", thread_id="run-1")
    assert again.answer == result.answer and len(again.trace.events) == 5


def test_a_run_without_a_token_consumer_runs_its_nodes_in_the_callers_thread(image_path, tmp_path):
    """With no ``on_token`` LangGraph runs each step's node in the calling thread (no worker and waiter
    threads); the run's answer, rationales and trace events are those of a run that streams its tokens."""
    import threading

    from redgraph.graphs import ask

    class Recording(ScriptedReasoner):
        def write(self, *args, **kwargs):
            self.threads = [*getattr(self, "threads", []), threading.get_ident()]
            return super().write(*args, **kwargs)

    results, threads = [], []
    for on_token in (None, [].append):
        reasoner = Recording([["The circle is red."]])
        context = RunContext(answerer=tiny("llava_clip"), reasoner=reasoner,
                             critic=ScriptedCritic({"The circle is red.": 0.9}), max_new_tokens=3)
        results.append(ask(image_path, QUESTION, context, checkpoint=tmp_path / f"{len(results)}.sqlite",
                           thread_id="run-1", on_token=on_token))
        threads.append(reasoner.threads)
    assert threads[0] == [threading.get_ident()] and threads[1] != [threading.get_ident()]
    quiet, streamed = results
    assert quiet.answer == streamed.answer and quiet.rationales == streamed.rationales
    strip = ("time", "timings", "hash", "prev_hash")
    assert ([{k: v for k, v in e.model_dump().items() if k not in strip} for e in quiet.trace.events]
            == [{k: v for k, v in e.model_dump().items() if k not in strip} for e in streamed.trace.events])


def test_a_failing_run_keeps_its_trace(image_path, tmp_path):
    from redgraph.errors import InputError
    from redgraph.graphs import ask

    class Failing(ScriptedCritic):
        def review(self, image, question, rationales):
            raise InputError("rationale 0 is too long for the critic")

    context = RunContext(answerer=tiny("llava_clip"), reasoner=ScriptedReasoner([["x."]]), critic=Failing({}))
    with pytest.raises(InputError, match="too long"):
        ask(image_path, QUESTION, context, checkpoint="memory", thread_id="f", trace_path=tmp_path / "t.json")
    trace = (tmp_path / "t.json").read_text()
    assert verify_text(trace).ok and '"error"' in trace and '"reason"' in trace


def test_html_report_shows_claims_tokens_and_history(image_path, tmp_path):
    from redgraph.trace.report import render_report

    reasoner = ScriptedReasoner([["The circle is <b>green</b>."], ["The circle is red."]])
    critic = ScriptedCritic({"The circle is <b>green</b>.": 0.1, "The circle is red.": 0.8})
    graph, _, config, _ = _run(image_path, reasoner, critic)
    state = graph.get_state(config).values
    html = render_report(state, Trace.from_events(state["trace_id"], state["trace"]))
    assert "Round 1: revise" in html and "Round 2: accept" in html
    assert 'class="claim unsupported"' in html and 'class="claim supported"' in html
    assert "&lt;b&gt;green&lt;/b&gt;" in html and "<b>green</b>" not in html  # rationale text is escaped
    assert html.count('class="token"') == len(state["answer"]["tokens"])
    assert "data:image/png;base64," in html and "chain intact" in html


def test_kill_and_resume_in_a_subprocess(image_path, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    calls = tmp_path / "calls.txt"
    args = [sys.executable, "-m", "tests.resume_script", str(tmp_path / "c.sqlite"), str(image_path), str(calls)]
    killed = subprocess.run([*args, "kill"], cwd=root, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    finished = subprocess.run([*args, "finish"], cwd=root, capture_output=True, text=True, check=True)
    result = json.loads(finished.stdout)
    assert calls.read_text() == "reason\n"  # the reasoner ran once: the resumed run did not redo it
    assert result["nodes"] == ["receive", "reason", "critique", "decide", "answer"]


def test_a_run_without_a_token_consumer_writes_its_checkpoints_on_one_thread(image_path, tmp_path):
    """``ask`` runs its one-node steps with ``max_concurrency=1``: LangGraph's executor then writes the
    run's SQLite checkpoints on one thread (by default it starts two or three per run)."""
    import threading

    from redgraph.graphs import ask

    context = RunContext(answerer=tiny("llava_clip"), reasoner=ScriptedReasoner([["The circle is red."]] * 3),
                         critic=ScriptedCritic({"The circle is red.": 0.9}), max_new_tokens=3)
    ask(image_path, QUESTION, context, checkpoint=tmp_path / "c.sqlite")  # the saver opened, the model warm
    started, start = [], threading.Thread.start

    def counted(thread):
        started.append(thread.name)
        return start(thread)

    threading.Thread.start = counted
    try:
        result = ask(image_path, QUESTION, context, checkpoint=tmp_path / "c.sqlite")
    finally:
        threading.Thread.start = start
    assert result.answer is not None and len(started) == 1, started


def test_the_agents_see_the_callers_langchain_concurrency_limit_not_the_graphs(image_path):
    """What a reasoner or critic calls through LangChain inherits the config of the caller of ``ask``
    (no limit, or the caller's own), not the one step at a time of the graph's loop."""
    from langchain_core.runnables import RunnableLambda
    from langchain_core.runnables.config import ensure_config

    from redgraph.graphs import ask

    seen = []

    class Looking(ScriptedReasoner):
        def write(self, *args, **kwargs):
            seen.append(("reason", ensure_config().get("max_concurrency")))
            return super().write(*args, **kwargs)

    class LookingCritic(ScriptedCritic):
        def review(self, *args, **kwargs):
            seen.append(("critique", ensure_config().get("max_concurrency")))
            return super().review(*args, **kwargs)

    def run(_):
        context = RunContext(answerer=tiny("llava_clip"), reasoner=Looking([["The circle is red."]]),
                             critic=LookingCritic({"The circle is red.": 0.9}), max_new_tokens=2)
        return ask(image_path, QUESTION, context, checkpoint="memory").answer

    assert run(None) is not None
    assert RunnableLambda(run).invoke(None, {"max_concurrency": 3}) is not None
    assert seen == [("reason", None), ("critique", None), ("reason", 3), ("critique", 3)]


def test_ask_pauses_for_review_and_resumes_with_the_persons_choice(image_path, tmp_path):
    from redgraph.errors import InputError
    from redgraph.graphs import ask

    def context():
        return RunContext(answerer=tiny("llava_clip"), reasoner=ScriptedReasoner([["The circle is green."]]),
                          critic=ScriptedCritic({"The circle is green.": 0.2}), rounds=1,
                          on_exhausted="human_review", max_new_tokens=2)

    db = tmp_path / "c.sqlite"
    paused = ask(image_path, QUESTION, context(), checkpoint=db, thread_id="h")
    assert paused.answer is None and paused.pending_review["rationales"] == ["The circle is green."]
    with pytest.raises(InputError, match="'use' must list rationale indices from 0 to 0"):
        ask(image_path, QUESTION, context(), checkpoint=db, thread_id="h", resume={"use": [3]})
    done = ask(image_path, QUESTION, context(), checkpoint=db, thread_id="h", resume={"image_only": True})
    assert done.outcome == "human_review" and done.state["chosen"] == {"rationales": [], "weights": []}
    assert done.answer is not None and done.pending_review is None


def test_a_thread_id_cannot_be_reused_for_another_question(image_path, tmp_path):
    from redgraph.errors import InputError
    from redgraph.graphs import ask

    context = RunContext(answerer=tiny("llava_clip"), reasoner=ScriptedReasoner([["The circle is red."]]),
                         critic=ScriptedCritic({"The circle is red.": 0.9}), max_new_tokens=2)
    ask(image_path, QUESTION, context, checkpoint=tmp_path / "c.sqlite", thread_id="same")
    with pytest.raises(InputError, match="another question or image"):
        ask(image_path, "How many shapes?", context, checkpoint=tmp_path / "c.sqlite", thread_id="same")


def test_an_over_long_rationale_fails_clearly_and_keeps_the_trace(image_path, tmp_path):
    from redgraph.errors import InputError
    from redgraph.graphs import ask

    long = "The circle is red and round. " * 400
    context = RunContext(answerer=tiny("llava_clip"), reasoner=ScriptedReasoner([[long]]),
                         critic=ScriptedCritic({long: 0.9}), max_new_tokens=2)
    with pytest.raises(InputError, match="rationale 0 is 6000 tokens, above this model's limit of 2048 tokens"):
        ask(image_path, QUESTION, context, checkpoint="memory", thread_id="long", trace_path=tmp_path / "t.json")
    trace = json.loads((tmp_path / "t.json").read_text())
    assert [e["node"] for e in trace["events"]] == ["receive", "reason", "critique", "decide", "run"]
    assert trace["events"][-1]["outputs"]["error"] == "InputError"
    assert verify_text((tmp_path / "t.json").read_text()).ok


def _verbal(text: str, support: float, supported: bool) -> dict:
    """A claim as a chat critic's verbal yes/no checked it: no probes, no probabilities."""
    return {"text": text, "support": support, "supported": supported, "method": "p_yes", "probes": [],
            "p_yes": None, "decomposer": None, "status": "supported" if supported else "unsupported",
            "experts": [], "disagreed": [],
            # The fake chat model wrote the claim and checked it: never shown as independently supported.
            "written_by": "langchain:GenericFakeChatModel", "checked_by": ["langchain:GenericFakeChatModel"],
            "independent": False}


def test_graph_with_fake_chat_models_as_reasoner_and_critic(image_path):
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    from redgraph.agents import ChatCritic
    from redgraph.agents.remote import LangChainReasoner

    reasoner_model = GenericFakeChatModel(messages=iter([AIMessage(content="The circle is blue. The square is blue."),
                                                         AIMessage(content="The circle is red. The square is blue.")]))
    critic_model = GenericFakeChatModel(messages=iter([AIMessage(content=t) for t in ("no", "yes", "yes", "yes")]))
    context = RunContext(answerer=tiny("llava_clip"), reasoner=LangChainReasoner(reasoner_model),
                         critic=ChatCritic(LangChainReasoner(critic_model)), max_new_tokens=3)
    graph = build_graph(InMemorySaver())
    config = {"configurable": {"thread_id": "fake"}}
    start = {"trace_id": "fake", "question": QUESTION, "image": {"sha256": image_sha256(scene()), "path": str(image_path)}}
    final = graph.invoke(start, config, context=context)
    # The whole final state, with the volatile parts (times, hashes, log-probs) checked separately.
    answer, trace = final.pop("answer"), final.pop("trace")
    assert final == {
        "trace_id": "fake",
        "question": QUESTION,
        "image": {"sha256": image_sha256(scene()), "path": str(image_path)},
        "settings": {"rationale_weight": 1.0, "rationales": 1, "rounds": 2, "on_exhausted": "image_only",
                     "on_unsure": "image_only", "max_new_tokens": 3},
        "round": 2,
        "rationales": [{"text": "The circle is red. The square is blue.", "style": "step_by_step",
                        "model": "langchain:GenericFakeChatModel", "analysis": None, "sampled": False,
                                 "evidence": (), "reading": None, "notes": ()}],
        "reviews": [{"support": 1.0, "accepted": True, "status": "accepted", "injections": [],
                     "claims": [_verbal("The circle is red.", 1.0, True),
                                _verbal("The square is blue.", 1.0, True)]}],
        "verdict": "accept",
        "critique": "",
        "history": [
            {"round": 1, "verdict": "revise",
             "critique": 'Rationale 1: "The circle is blue." is not supported by the image (P(true) = 0.00).',
             "rationales": [{"text": "The circle is blue. The square is blue.", "style": "step_by_step",
                             "model": "langchain:GenericFakeChatModel", "analysis": None, "sampled": False,
                                 "evidence": (), "reading": None, "notes": ()}],
             "reviews": [{"support": 0.0, "accepted": False, "status": "rejected", "injections": [],
                          "claims": [_verbal("The circle is blue.", 0.0, False),
                                     _verbal("The square is blue.", 1.0, True)]}], "unasked": [],
                 "picture": {"novelty": None, "novel": False, "calibration": None},
                     "reader_failures": []},
            {"round": 2, "verdict": "accept", "critique": "",
             "rationales": final["rationales"], "reviews": final["reviews"], "unasked": [],
                 "picture": {"novelty": None, "novel": False, "calibration": None},
                     "reader_failures": []},
        ],
        "outcome": "accepted",
        "flags": [],
        "chosen": {"rationales": ["The circle is red. The square is blue."], "weights": [1.0]},
    }
    assert answer["rationales"] == ["The circle is red. The square is blue."] and answer["rationale_lambdas"] == [1.0]
    assert [e["kind"] for e in trace] == ["input", "rationales", "verdict", "rationales", "verdict", "decision", "answer"]
    assert [e["model"]["id"] if e["model"] else None for e in trace] == [
        None, *["langchain:GenericFakeChatModel"] * 4, None, "tiny-random-llava_clip-tiny"]
    assert verify_text(Trace.from_events("fake", trace).to_json()).ok


def test_the_checkpoint_file_is_in_wal_mode_without_an_fsync_per_commit(tmp_path):
    # What makes the kill-and-resume test above hold with fewer fsyncs: committed WAL transactions
    # survive a killed process whatever the synchronous level.
    from redgraph.graphs.storage import open_checkpointer

    saver = open_checkpointer(tmp_path / "c.sqlite")
    try:
        saver.setup()
        assert saver.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert saver.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        saver.conn.close()


def test_the_image_is_loaded_once_at_the_entry_point_and_the_nodes_take_those_pixels(image_path, monkeypatch):
    from redgraph.graphs import ask, nodes, run

    reads = {"entry": 0, "nodes": 0}

    def counted(where: str, real):
        def read(*args, **kwargs):
            reads[where] += 1
            return real(*args, **kwargs)
        return read

    monkeypatch.setattr(run, "load_image_file_digests", counted("entry", run.load_image_file_digests))
    monkeypatch.setattr(nodes, "load_image_file", counted("nodes", nodes.load_image_file))
    context = RunContext(answerer=tiny("llava_clip"), reasoner=ScriptedReasoner([["The circle is red."]]),
                         critic=ScriptedCritic({"The circle is red.": 0.9}), max_new_tokens=2)
    result = ask(image_path, QUESTION, context, checkpoint="memory")
    assert result.answer is not None and reads == {"entry": 1, "nodes": 0}


def test_the_agents_take_a_loaded_image_as_it_is():
    from PIL import Image

    from redgraph.models.images import load_image, ready_image

    loaded = load_image(scene())
    assert ready_image(loaded) is loaded
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 255))
    assert ready_image(rgba) is not rgba and ready_image(rgba).mode == "RGB"


def test_an_empty_answer_is_flagged(image_path, monkeypatch):
    from redgraph.agents import answerer
    from redgraph.decoding import REDResult
    from redgraph.graphs import ask

    def says_nothing(*args, **kwargs):
        return answerer.Answer(REDResult(text="", token_ids=[], finish_reason="eos", rationale_lambdas=()), (), ())

    monkeypatch.setattr(answerer, "answer_with_red", says_nothing)
    context = RunContext(answerer=tiny("llava_clip"), reasoner=ScriptedReasoner([["The circle is red."]]),
                         critic=ScriptedCritic({"The circle is red.": 0.9}), max_new_tokens=2)
    result = ask(image_path, QUESTION, context, checkpoint="memory")
    assert result.answer == "" and result.flags == ["empty_answer"]


def test_the_answer_event_records_what_changes_results(image_path):
    import torch
    import transformers

    from redgraph.graphs import ask

    context = RunContext(answerer=tiny("llava_clip"), reasoner=ScriptedReasoner([["The circle is red."]]),
                         critic=ScriptedCritic({"The circle is red.": 0.9}), max_new_tokens=2)
    answer = next(e for e in ask(image_path, QUESTION, context, checkpoint="memory").trace.events if e.kind == "answer")
    assert answer.config["transformers"] == transformers.__version__ and answer.config["torch"] == torch.__version__
    assert answer.config["dtype"] == "float32" and answer.config["attention"] and answer.model.weights_digest


def test_a_resume_keeps_the_settings_the_run_started_with(image_path):
    """Issue 16: resuming a review through a server without the context again changed the policy."""
    import dataclasses

    reasoner = ScriptedReasoner([["The circle is green."]])
    graph, context, config, _ = _run(image_path, reasoner, ScriptedCritic({"The circle is green.": 0.1}),
                                     rounds=1, on_exhausted="human_review")
    assert graph.get_state(config).next == ("decide",)
    other = dataclasses.replace(context, on_exhausted="best_supported", rounds=5, max_new_tokens=1)
    final = graph.invoke(Command(resume={"use": [0]}), config, context=other)
    assert final["outcome"] == "human_review" and final["flags"] == ["human_reviewed"]
    assert final["settings"]["on_exhausted"] == "human_review" and final["answer"]["rationales"] == [
        "The circle is green."]
