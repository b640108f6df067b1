"""Work that outlives its caller stops: a request's decoding when its client goes away or its deadline
passes (its batch-mates go on), and a graph run between nodes and mid-answer."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

from redgraph.decoding import REDConfig, REDDecoder, REDRequest
from redgraph.errors import Cancelled
from tests.conftest import scene, tiny

QUESTION = "What colour is the circle?"


def _stop_after(steps: int):
    asked = []

    def should_stop() -> bool:
        asked.append(1)
        return len(asked) > steps
    return should_stop


def test_a_cancelled_request_stops_and_its_batch_mates_go_on():
    lvlm = tiny("qwen2_vl")
    decoder = REDDecoder(lvlm, REDConfig(max_new_tokens=6, eos_token_ids=()))
    alone = decoder.decode(scene(), QUESTION, ["The circle is red."])
    stopped, kept = decoder.decode_batch([
        REDRequest(scene(), QUESTION, ("The circle is red.",), should_stop=_stop_after(2)),
        REDRequest(scene(), QUESTION, ("The circle is red.",)),
    ])
    assert stopped.finish_reason == "cancelled" and stopped.token_ids == alone.token_ids[:2]
    assert kept.token_ids == alone.token_ids and kept.finish_reason == alone.finish_reason


def test_the_batcher_cancels_a_running_job_and_drops_a_queued_one():
    from redgraph.serve.batcher import DecodeBatcher

    async def scenario():
        batcher = DecodeBatcher(tiny("qwen2_vl"), max_batch=1)
        config = REDConfig(max_new_tokens=200, eos_token_ids=())
        try:
            running = batcher.submit(REDRequest(scene(), QUESTION), config)
            queued = batcher.submit(REDRequest(scene(), QUESTION), config)
            await running.events.get()  # its first token: it is decoding
            running.cancel()
            queued.cancel()
            first = await running.result()
            with pytest.raises(Cancelled, match="before it was decoded"):
                await queued.result()
            late = batcher.submit(REDRequest(scene(), QUESTION), config, timeout_s=0.0)  # past it when taken
            with pytest.raises(Cancelled, match="before it was decoded"):
                await late.result()
            return first
        finally:
            batcher.close()

    first = asyncio.run(scenario())
    assert first.finish_reason == "cancelled" and len(first.token_ids) < 200


def test_a_disconnected_client_cancels_its_work():
    from redgraph.serve.app import _until_done

    async def scenario():
        cancelled = []
        work = asyncio.ensure_future(asyncio.sleep(0.6, result="finished anyway"))

        async def is_disconnected():
            return True
        result = await _until_done(work, SimpleNamespace(is_disconnected=is_disconnected), lambda: cancelled.append(1))
        return result, cancelled

    result, cancelled = asyncio.run(scenario())
    assert result == "finished anyway" and cancelled  # told to stop, then awaited to its end


def test_a_stream_whose_client_goes_away_cancels_its_job():
    from redgraph.serve.openai import stream

    async def scenario():
        events: asyncio.Queue = asyncio.Queue()
        cancelled = []
        job = SimpleNamespace(events=events, request=SimpleNamespace(rationales=()), cancel=lambda: cancelled.append(1))
        chunks = stream(job, tiny("qwen2_vl").tokenizer, "id", 0, "tiny", (), False)
        await chunks.__anext__()  # the opening chunk; then the client leaves
        await chunks.aclose()
        return cancelled

    assert asyncio.run(scenario()) == [1]


def test_a_graph_run_stops_between_nodes_and_mid_answer(tmp_path):
    from redgraph.agents import ScriptedReasoner
    from redgraph.graphs import ask, make_context
    from redgraph.trace import verify_text

    path = tmp_path / "scene.png"
    scene().save(path)
    lvlm = tiny("llava_clip")
    for steps, where in ((0, "between steps"), (6, "mid-way")):
        # should_stop is asked once per node from reason on, then at every answer token.
        context = make_context(lvlm, reasoner=ScriptedReasoner(["The circle is red."]), rounds=1,
                               on_exhausted="best_supported", max_new_tokens=50,
                               should_stop=_stop_after(steps) if steps else (lambda: True))
        with pytest.raises(Cancelled, match=where):
            ask(path, QUESTION, context, checkpoint="memory", trace_path=tmp_path / f"{steps}.json")
        trace = (tmp_path / f"{steps}.json").read_text()
        assert verify_text(trace).ok and '"error": "Cancelled"' in trace


def test_the_server_answers_504_past_its_deadline():
    pytest.importorskip("fastapi")
    import httpx

    from redgraph.models.images import image_data_url
    from redgraph.serve import ServerSettings, create_app
    from tests.test_server import LiveServer

    settings = ServerSettings(model_name="tiny", request_timeout_s=1e-6)
    url = image_data_url(scene())
    with LiveServer(create_app(tiny("llava_clip"), settings)) as live:
        chat = httpx.post(live.url + "/v1/chat/completions", timeout=60, json={
            "model": "tiny", "max_tokens": 8, "messages": [{"role": "user", "content": [
                {"type": "text", "text": QUESTION}, {"type": "image_url", "image_url": {"url": url}}]}]})
        graph = httpx.post(live.url + "/v1/redgraph/ask", timeout=60, json={"image": url, "question": QUESTION})
        started = time.monotonic()
        health = httpx.get(live.url + "/health", timeout=10).json()
    assert chat.status_code == 504 and chat.json()["error"]["code"] == "timeout"
    assert graph.status_code == 504 and "deadline" in graph.json()["error"]["message"]
    assert health["pending"] == 0 and health["graph_runs"] == 0 and time.monotonic() - started < 5


def test_a_stopped_generation_leaves_the_running_batch_and_its_batch_mate_goes_on():
    from concurrent.futures import ThreadPoolExecutor

    from redgraph.decoding.combining import combiner_of
    from tests.test_combining import greedy

    lvlm = tiny("qwen2_vl")
    alone = combiner_of(lvlm).run_steps(greedy(lvlm, QUESTION, 8, eos=False))
    stopped = greedy(lvlm, QUESTION, 8, eos=False)
    stopped.should_stop = _stop_after(3)
    with ThreadPoolExecutor(2) as pool:
        jobs = (stopped, greedy(lvlm, QUESTION, 8, eos=False))
        futures = [pool.submit(combiner_of(lvlm).run_steps, job) for job in jobs]
        with pytest.raises(Cancelled, match="stopped after 3 tokens"):
            futures[0].result()
        assert futures[1].result() == alone


def test_a_graph_run_stops_its_local_reasoner_mid_rationale(tmp_path):
    from redgraph.decoding.generate import GreedySteps
    from redgraph.graphs import ask, make_context
    from redgraph.trace import verify_text

    path = tmp_path / "scene.png"
    scene().save(path)
    lvlm = tiny("qwen2_vl")
    asked = []
    real_advance = GreedySteps.advance

    def advance(self, logprobs, note=None):  # a random model may end at once: count the tokens asked for
        asked.append(1)
        return real_advance(self, logprobs, note)

    context = make_context(lvlm, rounds=1, should_stop=_stop_after(3))  # the reasoner node asks once first
    GreedySteps.advance = advance
    try:
        with pytest.raises(Cancelled, match="generation was stopped after 2 tokens"):
            ask(path, QUESTION, context, checkpoint="memory", trace_path=tmp_path / "t.json")
    finally:
        GreedySteps.advance = real_advance
    trace = (tmp_path / "t.json").read_text()
    assert verify_text(trace).ok and '"error": "Cancelled"' in trace and len(asked) == 3


@pytest.mark.parametrize("family, temperature", [("gemma3", None), ("qwen2_vl", 0.7)])
def test_generation_through_generate_stops_too(family, temperature):
    """Families whose rows cannot join a running batch (Gemma 3), and sampling, decode through
    ``generate``: a stop check there ends the caller's rows and raises, as in the running batch."""
    from redgraph.decoding.generate import generate_text, stopping
    from redgraph.models.prompts import render

    lvlm = tiny(family)
    text = render(lvlm.processor, QUESTION, with_image=True)
    asked = _stop_after(2)
    with stopping(asked):
        with pytest.raises(Cancelled, match="generation was stopped"):
            generate_text(lvlm, [text], [scene()], 40, temperature=temperature, seed=0)
    with stopping(lambda: False):
        assert isinstance(generate_text(lvlm, [text], [scene()], 4, temperature=temperature, seed=0)[0], str)
