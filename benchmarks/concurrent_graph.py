"""Whole graph runs at once: 8 concurrent runs against 1 at a time, on one loaded model.

    python benchmarks/concurrent_graph.py --json [--runs 16] [--tiny]

Each run is ``redgraph.graphs.run_graph`` (what the server's graph endpoint, the LangChain tool
and MCP call): the local reasoner writes a rationale, the critic checks it, RED answers, with an
in-memory checkpointer and the trace. Reported, from one process and one sitting:

- ``runs_per_s_8_vs_1``: graph runs per second with 8 threads running them at once / with one
  thread running them one after another (the same runs). Goal >= 1.5 on the embedded model and
  >= 3 on a decode-bound tiny model (``--tiny``: a random Qwen2-VL whose rationales and answers run
  to their token limits).
- ``single_run_vs_uncombined``: the median seconds of one run alone with combining on / off
  (``Combiner.enabled``): what a lone caller pays for it. Goal <= 1.05.
- ``lone_generate_vs_generate``, ``lone_red_vs_decode_batch``: one call alone through the model's
  running batch against the direct call that did the same work before it (``generate`` for the
  reasoner's greedy 96 tokens; ``REDDecoder.decode_batch`` for a RED answer of 24 tokens with one
  rationale), medians of interleaved repeats: what a single run pays for continuous batching.
- ``vision_cache``: pictures served from the model's vision-feature cache and computed in the
  concurrent phase (:mod:`redgraph.models.vision_cache`; a graph run shows its picture to the model
  about four times). It and the critic's prefix cache (:mod:`redgraph.decoding.prefix_cache`) are
  emptied before each phase and before every timed lone run, so no run finds its picture from an
  earlier one; ``single_run_vs_no_vision_cache`` is a lone run's
  median seconds with the cache on / off, and the two lone-call ratios are measured with it off (they
  are about continuous batching alone).
- ``batch_sizes``: how many jobs joined the model's running batch at once (or ran together, for a
  family whose rows cannot join later) in the concurrent phase.
- ``forwards``, ``rows_per_forward``: the running batch's decoding forwards in the concurrent phase
  and the rows (reasoner prompts, RED branches) each advanced on average.
- ``same_results``: every concurrent run's answer, rationales, supports and verdicts equal the same
  run's alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--runs", type=int, default=16, help="graph runs in each phase")
    parser.add_argument("--tiny", action="store_true", help="a tiny random Qwen2-VL (decode-bound) instead of the embedded model")
    parser.add_argument("--repeats", type=int, default=5, help="lone runs timed with combining on and off")
    args = parser.parse_args()

    import redgraph
    from redgraph.data import generate_items
    from redgraph.graphs.run import run_graph
    from redgraph.decoding.combining import combiner_of
    from redgraph.decoding.prefix_cache import prefix_cache_of
    from redgraph.models.vision_cache import vision_cache_of

    if args.tiny:
        from redgraph.models import build_tiny_lvlm

        lvlm = build_tiny_lvlm("qwen2_vl")
        settings = {"max_new_tokens": 24}
    else:
        lvlm = redgraph.load_embedded()
        settings = {}
    items = list(generate_items("test", args.runs))
    pictures = [item.image() for item in items]

    def one(index: int) -> dict:
        result = run_graph(lvlm, pictures[index], items[index].question, **settings)
        return {"answer": result.answer, "verdict": result.verdict, "outcome": result.outcome,
                "rationales": [(r["text"], r["support"], r["status"]) for r in result.rationales],
                "tokens": [t["token_id"] for t in (result.state.get("answer") or {}).get("tokens", [])]}

    combiner = combiner_of(lvlm)
    vision = vision_cache_of(lvlm.model)
    prefixes = prefix_cache_of(lvlm.model)

    def forget() -> None:
        vision.clear()
        prefixes.clear()

    def fresh(index: int) -> dict:
        """One run whose picture the model's caches have not seen."""
        forget()
        return one(index)

    one(0)  # warm-up
    forget()
    started = time.perf_counter()
    alone = [one(i) for i in range(args.runs)]
    serial_s = time.perf_counter() - started
    combiner.batches.clear()
    combiner.step_rows.clear()
    forget()
    vision.hits = vision.misses = 0
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(one, range(args.runs)))
    concurrent_s = time.perf_counter() - started
    batches = Counter(combiner.batches)
    rows = list(combiner.step_rows)
    vision_use = {"hits": vision.hits, "misses": vision.misses}

    def lone_runs(switch) -> dict[bool, list[float]]:
        """Seconds of one run alone with ``switch.enabled`` on and off, interleaved."""
        seconds: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.repeats):
            for enabled in (True, False):
                switch.enabled = enabled
                started = time.perf_counter()
                fresh(0)
                seconds[enabled].append(time.perf_counter() - started)
        switch.enabled = True
        return seconds

    timings = lone_runs(combiner)
    cached = lone_runs(vision)
    vision.enabled = False
    lone = lone_calls(lvlm, items[0], pictures[0], args.repeats)
    vision.enabled = True
    report = {
        "model": "tiny qwen2_vl" if args.tiny else "embedded",
        "runs": args.runs,
        "runs_per_s_1": round(args.runs / serial_s, 3),
        "runs_per_s_8": round(args.runs / concurrent_s, 3),
        "runs_per_s_8_vs_1": round(serial_s / concurrent_s, 3),
        "single_run_s": round(statistics.median(timings[True]), 4),
        "single_run_uncombined_s": round(statistics.median(timings[False]), 4),
        "single_run_vs_uncombined": round(statistics.median(timings[True]) / statistics.median(timings[False]), 3),
        "single_run_vs_no_vision_cache": round(statistics.median(cached[True]) / statistics.median(cached[False]), 3),
        **lone,
        "vision_cache": vision_use,
        "batch_sizes": dict(sorted(batches.items())),
        "forwards": len(rows),
        "rows_per_forward": round(sum(rows) / len(rows), 2) if rows else None,
        "same_results": together == alone,
    }
    print(json.dumps(report, indent=2) if args.json else report)


def lone_calls(lvlm, item, picture, repeats: int) -> dict:
    """Median seconds of one reasoner generation and one RED answer, through the running batch and
    directly, interleaved, and their ratios."""
    from redgraph.decoding import REDConfig, REDDecoder, REDRequest
    from redgraph.decoding.combining import combiner_of
    from redgraph.decoding.generate import generate_text
    from redgraph.models.generation import generate_with_hf
    from redgraph.models.prompts import render

    text = render(lvlm.processor, "Describe what you see, then answer: " + item.question, with_image=True)
    decoder = REDDecoder(lvlm, REDConfig(rationale_weight=0.0, max_new_tokens=24, eos_token_ids=()))
    request = REDRequest(picture, item.question, (item.gold_rationale,), (0.5,), rationale_weight=0.5)
    calls = {
        "generate": lambda: generate_with_hf(lvlm, [text], [picture], 96),
        "lone_generate": lambda: generate_text(lvlm, [text], [picture], 96),
        "decode_batch": lambda: decoder.decode_batch([request]),
        "lone_red": lambda: combiner_of(lvlm).run_steps(decoder.steps([request])),
    }
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats + 1):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - started)
    median = {name: statistics.median(values[1:]) for name, values in seconds.items()}  # the first is warm-up
    return {
        "lone_generate_vs_generate": round(median["lone_generate"] / median["generate"], 3),
        "lone_red_vs_decode_batch": round(median["lone_red"] / median["decode_batch"], 3),
    }


if __name__ == "__main__":
    main()
