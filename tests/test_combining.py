"""Concurrent callers of one model share its batches (redgraph.models.combining), and concurrent
graph runs give what each run gives alone."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from redgraph.models.combining import Combiner


def wait_until(condition, timeout=10.0):
    """Wait for ``condition()``; a combiner that never gets there fails the test instead of hanging it."""
    event = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        event.wait(0.01)
    raise AssertionError("the combiner did not get there in time")


def test_a_lone_caller_runs_its_own_job_at_once_in_its_own_thread():
    combiner = Combiner()
    seen = []

    def execute(items, note):
        seen.append(threading.get_ident())
        note(0, "token")
        return [item * 2 for item in items]

    notes = []
    assert combiner.run("k", 21, execute, on_note=notes.append) == 42
    assert seen == [threading.get_ident()] and notes == ["token"] and combiner.batches == [1]


def test_callers_that_arrive_while_a_batch_runs_share_the_next_one_and_each_gets_its_own_result():
    combiner = Combiner()
    first_running, release = threading.Event(), threading.Event()
    notes: dict[int, list] = {}

    def execute(items, note):
        if items == [0]:
            first_running.set()
            release.wait(5)
        for index, item in enumerate(items):
            note(index, ("owner", item))
        return [item + 100 for item in items]

    def call(item):
        mine = []
        notes[item] = mine
        result = combiner.run("k", item, execute, on_note=lambda value: mine.append((value, threading.get_ident())))
        return result, threading.get_ident()

    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(call, 0)
        first_running.wait(5)
        rest = [pool.submit(call, item) for item in range(1, 8)]
        wait_until(lambda: len(combiner._waiting) == 7)  # all seven queued behind the running batch
        release.set()
        results = [first.result(10)] + [future.result(10) for future in rest]
    assert [r for r, _ in results] == [100 + item for item in range(8)]
    assert sorted(combiner.batches) == [1, 7]
    for item, (_, thread) in enumerate(results):
        # Each caller's notes reached it in its own thread, not the leader's.
        assert notes[item] == [(("owner", item), thread)]


def test_one_bad_job_fails_only_its_own_caller():
    combiner = Combiner()
    gate = threading.Event()

    def execute(items, note):
        if len(items) == 1 and items[0] == "slow":
            gate.wait(5)
        if "bad" in items:
            raise ValueError("bad item")
        return [item.upper() for item in items]

    with ThreadPoolExecutor(4) as pool:
        slow = pool.submit(combiner.run, "k", "slow", execute)
        wait_until(lambda: combiner.batches)
        others = [pool.submit(combiner.run, "k", item, execute) for item in ("a", "bad", "c")]
        wait_until(lambda: len(combiner._waiting) == 3)
        gate.set()
        assert slow.result(10) == "SLOW"
        assert others[0].result(10) == "A" and others[2].result(10) == "C"
        with pytest.raises(ValueError, match="bad item"):
            others[1].result(10)


def test_jobs_of_other_keys_do_not_share_a_batch():
    combiner = Combiner()
    gate = threading.Event()
    ran = []

    def execute(items, note):
        if items == ["first"]:
            gate.wait(5)
        ran.append(sorted(items))
        return list(items)

    with ThreadPoolExecutor(5) as pool:
        first = pool.submit(combiner.run, "a", "first", execute)
        wait_until(lambda: combiner.batches)
        others = [pool.submit(combiner.run, key, f"{key}{n}", execute) for key in ("a", "b") for n in range(2)]
        wait_until(lambda: len(combiner._waiting) == 4)
        gate.set()
        assert first.result(10) == "first" and [f.result(10) for f in others] == ["a0", "a1", "b0", "b1"]
    assert sorted(ran) == [["a0", "a1"], ["b0", "b1"], ["first"]]


def test_concurrent_graph_runs_batch_and_give_what_each_run_gives_alone():
    from redgraph.data import generate_items
    from redgraph.graphs.run import run_graph
    from redgraph.models.combining import combiner_of
    from tests.conftest import tiny

    lvlm = tiny("qwen2_vl")
    items = list(generate_items("test", 6))

    def one(index):
        result = run_graph(lvlm, items[index].image(), items[index].question, max_new_tokens=6)
        answer = result.state.get("answer") or {}
        return {"answer": result.answer, "verdict": result.verdict, "outcome": result.outcome, "flags": result.flags,
                "rationales": result.rationales, "tokens": [t["token_id"] for t in answer.get("tokens", [])],
                "logprobs": [t["logprob"] for t in answer.get("tokens", [])]}

    alone = [one(i) for i in range(len(items))]
    combiner = combiner_of(lvlm)
    combiner.batches.clear()
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(one, range(len(items))))
    assert max(combiner.batches) > 1  # the runs did share forwards
    for a, b in zip(alone, together):
        assert {k: v for k, v in a.items() if k != "logprobs"} == {k: v for k, v in b.items() if k != "logprobs"}
        # A batch's padding changes the last bits of a float, never a token.
        assert b["logprobs"] == pytest.approx(a["logprobs"], abs=1e-4)
