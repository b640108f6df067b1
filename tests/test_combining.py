"""Concurrent callers of one model share its batches (redgraph.decoding.combining), and concurrent
graph runs give what each run gives alone."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from redgraph.decoding.combining import Combiner
from tests.conftest import scene


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
    from redgraph.decoding.combining import combiner_of
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


# -- continuous batching: step jobs join and leave the model's running batch ------------------------


class Held:
    """A step job that, after its first step, holds the leader until ``release`` is set."""

    def __init__(self, inner, stepped: threading.Event, release: threading.Event):
        self.inner, self.stepped, self.release = inner, stepped, release
        self.inputs = inner.inputs

    def advance(self, logprobs, note):
        tokens = self.inner.advance(logprobs, note)
        if not self.stepped.is_set():
            self.stepped.set()
            self.release.wait(5)
        return tokens

    def result(self):
        return self.inner.result()

    def restart(self):
        self.inner.restart()


def greedy(lvlm, question, max_new_tokens, *, eos=True):
    from redgraph.decoding.generate import GreedySteps
    from redgraph.models.prompts import render

    job = GreedySteps(lvlm, [render(lvlm.processor, question, with_image=True)], [scene()], max_new_tokens)
    if not eos:
        job._eos = None  # a random tiny model may end at once; these tests need it to run on
    return job


def red_job(lvlm, question, rationale="The circle is red.", max_new_tokens=6, should_stop=None):
    from redgraph.decoding import REDConfig, REDDecoder, REDRequest

    config = REDConfig(rationale_weight=0.5, max_new_tokens=max_new_tokens, eos_token_ids=())
    return REDDecoder(lvlm, config).steps([REDRequest(scene(), question, (rationale,), should_stop=should_stop)])


def run_alone(job):
    from redgraph.decoding.combining import Combiner
    from tests.conftest import tiny

    return Combiner(tiny("qwen2_vl").model).run_steps(job)


def test_a_job_joins_a_running_batch_between_steps_and_both_give_what_they_give_alone():
    from redgraph.decoding.combining import Combiner
    from tests.conftest import tiny

    lvlm = tiny("qwen2_vl")
    combiner = Combiner(lvlm.model)
    stepped, release = threading.Event(), threading.Event()
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(combiner.run_steps, Held(greedy(lvlm, "Describe it.", 10, eos=False), stepped, release))
        stepped.wait(5)
        second = pool.submit(combiner.run_steps, red_job(lvlm, "What colour is the circle?"))
        wait_until(lambda: len(combiner._waiting) == 1)  # queued while the first is mid-decoding
        release.set()
        long_text, [answer] = first.result(10), second.result(10)
    # The RED job's two rows (image and rationale branch) joined the greedy job's row after its
    # first steps, one forward for all three, and the greedy row went on alone after they left.
    assert combiner.step_rows[0] == 1 and 3 in combiner.step_rows and combiner.step_rows[-1] == 1
    assert combiner.batches == [1, 1]
    assert long_text == run_alone(greedy(lvlm, "Describe it.", 10, eos=False))
    [alone] = run_alone(red_job(lvlm, "What colour is the circle?"))
    assert answer.token_ids == alone.token_ids and answer.text == alone.text
    assert [t.logprob for t in answer.tokens] == pytest.approx([t.logprob for t in alone.tokens], abs=1e-4)


def test_greedy_steps_give_what_generate_gives_in_every_family_that_shares_steps(family_lvlm):
    from redgraph.decoding.combining import combiner_of
    from redgraph.decoding.generate import generate_text
    from redgraph.models.generation import generate_with_hf
    from redgraph.models.prompts import render

    lvlm = family_lvlm
    texts = [render(lvlm.processor, question, with_image=True) for question in ("Describe it.", "What is red?")]
    pictures = [scene(), scene("blue")]
    expected = [generate_with_hf(lvlm, [text], [picture], 8)[0] for text, picture in zip(texts, pictures)]
    assert generate_text(lvlm, texts, pictures, 8) == expected
    # Sliding-window layers (Gemma 3) keep whole jobs: their prompts still batch, through generate.
    assert combiner_of(lvlm).steps == (lvlm.family != "gemma3")


def test_a_job_that_fails_while_decoding_fails_only_itself():
    from redgraph.decoding.combining import Combiner
    from tests.conftest import tiny

    lvlm = tiny("qwen2_vl")
    combiner = Combiner(lvlm.model)
    stepped, release = threading.Event(), threading.Event()

    class Breaks(Held):
        def advance(self, logprobs, note):
            if self.stepped.is_set():
                raise ValueError("broken job")
            return super().advance(logprobs, note)

    with ThreadPoolExecutor(2) as pool:
        bad = pool.submit(combiner.run_steps, Breaks(greedy(lvlm, "Describe it.", 10, eos=False), stepped, release))
        stepped.wait(5)
        good = pool.submit(combiner.run_steps, greedy(lvlm, "What is red?", 6, eos=False))
        wait_until(lambda: len(combiner._waiting) == 1)
        release.set()
        with pytest.raises(ValueError, match="broken job"):
            bad.result(10)
        assert good.result(10) == run_alone(greedy(lvlm, "What is red?", 6, eos=False))


def test_a_job_whose_prefill_fails_fails_only_itself_and_its_batch_mates_join():
    import torch

    from redgraph.decoding.combining import Combiner
    from tests.conftest import tiny

    lvlm = tiny("qwen2_vl")
    combiner = Combiner(lvlm.model)
    stepped, release = threading.Event(), threading.Event()
    broken = greedy(lvlm, "Describe it.", 4)
    broken.inputs[0]["pixel_values"] = torch.zeros(3, 5)  # no image the vision tower can read
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(combiner.run_steps, Held(greedy(lvlm, "Describe it.", 8, eos=False), stepped, release))
        stepped.wait(5)
        bad = pool.submit(combiner.run_steps, broken)
        good = pool.submit(combiner.run_steps, greedy(lvlm, "What is red?", 6, eos=False))
        wait_until(lambda: len(combiner._waiting) == 2)  # both join at the same step
        release.set()
        with pytest.raises(Exception):
            bad.result(10)
        assert good.result(10) == run_alone(greedy(lvlm, "What is red?", 6, eos=False))
        assert first.result(10) == run_alone(greedy(lvlm, "Describe it.", 8, eos=False))


def test_when_a_shared_forward_fails_each_job_is_decoded_again_alone(monkeypatch):
    from redgraph.decoding import rows
    from redgraph.decoding.combining import Combiner
    from tests.conftest import tiny

    lvlm = tiny("qwen2_vl")
    expected = [run_alone(greedy(lvlm, "Describe it.", 6, eos=False)), run_alone(red_job(lvlm, "What is red?"))]
    combiner = Combiner(lvlm.model)
    stepped, release = threading.Event(), threading.Event()
    real_step, failed = rows.RowGroup.step, []

    def step_once_failing(self, tokens):
        if self.size > 1 and not failed:
            failed.append(self.size)
            raise RuntimeError("out of memory")
        return real_step(self, tokens)

    monkeypatch.setattr(rows.RowGroup, "step", step_once_failing)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(combiner.run_steps, Held(greedy(lvlm, "Describe it.", 6, eos=False), stepped, release))
        stepped.wait(5)
        second = pool.submit(combiner.run_steps, red_job(lvlm, "What is red?"))
        wait_until(lambda: len(combiner._waiting) == 1)
        release.set()
        text, [answer] = first.result(10), second.result(10)
    assert failed == [3]
    assert text == expected[0] and answer.token_ids == expected[1][0].token_ids


def test_a_cancelled_request_leaves_the_batch_and_the_others_go_on():
    from redgraph.decoding.combining import Combiner
    from tests.conftest import tiny

    lvlm = tiny("qwen2_vl")
    combiner = Combiner(lvlm.model)
    stepped, release = threading.Event(), threading.Event()
    cancel = threading.Event()
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(combiner.run_steps, Held(greedy(lvlm, "Describe it.", 10, eos=False), stepped, release))
        stepped.wait(5)
        second = pool.submit(combiner.run_steps, red_job(lvlm, "What is red?", max_new_tokens=8,
                                                         should_stop=cancel.is_set))
        wait_until(lambda: len(combiner._waiting) == 1)
        cancel.set()  # before its first token: it ends at once, never stepped
        release.set()
        [answer] = second.result(10)
        assert first.result(10) == run_alone(greedy(lvlm, "Describe it.", 10, eos=False))
    assert answer.finish_reason == "cancelled" and answer.token_ids == []
    assert max(combiner.step_rows) == 1


def test_red_answers_of_one_config_choose_together_and_each_gets_what_it_gets_alone(monkeypatch):
    from redgraph.decoding.combining import Combiner
    from redgraph.decoding.decoder import REDSteps
    from tests.conftest import tiny

    lvlm = tiny("qwen2_vl")
    questions = ["What colour is the circle?", "Is there a square?"]
    expected = [run_alone(red_job(lvlm, q))[0] for q in questions]
    together = []
    real = REDSteps.advance_group

    def spy(jobs, logprobs, notes):
        together.append(len(jobs))
        return real(jobs, logprobs, notes)

    monkeypatch.setattr(REDSteps, "advance_group", staticmethod(spy))
    combiner = Combiner(lvlm.model)
    stepped, release = threading.Event(), threading.Event()
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(combiner.run_steps, Held(greedy(lvlm, "Describe it.", 10, eos=False), stepped, release))
        stepped.wait(5)
        answers = [pool.submit(combiner.run_steps, red_job(lvlm, questions[0]))]
        wait_until(lambda: len(combiner._waiting) == 1)
        other = pool.submit(combiner.run_steps, greedy(lvlm, "What is red?", 6, eos=False))
        wait_until(lambda: len(combiner._waiting) == 2)
        answers.append(pool.submit(combiner.run_steps, red_job(lvlm, questions[1])))
        wait_until(lambda: len(combiner._waiting) == 3)
        release.set()
        results = [future.result(10)[0] for future in answers]
        first.result(10), other.result(10)
    # The batch held greedy, RED, greedy, RED rows: the two RED jobs' rows were gathered and chosen as one.
    assert 2 in together and combiner.batches == [1, 3]
    for got, alone in zip(results, expected):
        assert got.token_ids == alone.token_ids and got.text == alone.text
        assert [t.logprob for t in got.tokens] == pytest.approx([t.logprob for t in alone.tokens], abs=1e-4)
        assert [t.image_logprob for t in got.tokens] == pytest.approx([t.image_logprob for t in alone.tokens], abs=1e-4)
        assert [t.rationale_logprobs[0] for t in got.tokens] == pytest.approx(
            [t.rationale_logprobs[0] for t in alone.tokens], abs=1e-4)
        assert [t.changed_by_rationale for t in got.tokens] == [t.changed_by_rationale for t in alone.tokens]
