"""What the graph costs on top of the models, and what checking 8 claims costs against 1.

    python benchmarks/graph_overhead.py --json

- ``graph_overhead_share``: (end-to-end time of ``ask`` with the SQLite checkpointer and the trace)
  minus (time inside the reasoner, the critic and the RED answerer), over end-to-end. This is
  LangGraph, checkpointing, trace hashing and image reloading. Goal <= 0.05.
- ``critic_8_vs_1``: time to check 8 claims about one image / 1 claim, with the critic's default
  scoring (each claim asked as probes; one shared image prefix). Goal <= 2.
  ``critic_p_yes_8_vs_1``: the same with P(yes) scoring.
- ``ms_per_ask``: where the time of the measured runs went, per ``ask``: the models, checkpoint
  writes (the saver's ``put`` and ``put_writes``), reading and checking the image in the nodes,
  building and writing the trace, and the rest (LangGraph itself, reading checkpoints).

Embedded model, held-out synthetic items, medians of interleaved repeats after a warm-up. The
model's picture caches are emptied before every timed call, so each ``ask`` sees its picture anew,
and each critic call prefills its image prefix as a run's first review does (the picture's vision
features stay cached: in a run the reasoner has made them before the critic looks).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default=None, help="checkpoint folder; default: the embedded model")
    parser.add_argument("--checkpoint", choices=("sqlite", "memory"), default="sqlite",
                        help="LangGraph's SQLite saver (the default of ask) or the in-memory one")
    args = parser.parse_args()

    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.sqlite import SqliteSaver

    from redgraph.agents import answerer
    from redgraph.agents.critic import LocalCritic
    from redgraph.data import generate_items
    from redgraph.graphs import ask, make_context, nodes, run

    context = make_context(args.model, rationales=1, rounds=1, max_new_tokens=8)
    inside = [0.0]
    parts: dict[str, float] = {}

    def timed(fn, part="models"):
        def wrapper(*a, **k):
            started = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent = time.perf_counter() - started
                parts[part] = parts.get(part, 0.0) + spent
                if part == "models":
                    inside[0] += spent
        return wrapper

    context.reasoner.write = timed(context.reasoner.write)
    context.critic.review = timed(context.critic.review)
    answerer.answer_with_red = timed(answerer.answer_with_red)
    for saver in (SqliteSaver, InMemorySaver):
        for method in ("put", "put_writes"):
            setattr(saver, method, timed(getattr(saver, method), "checkpoint_writes"))
    nodes._image = timed(nodes._image, "image_checks")
    nodes._event = timed(nodes._event, "trace")
    run._write_trace = timed(run._write_trace, "trace")

    items = list(generate_items("test", 3))
    folder = Path(tempfile.mkdtemp())
    paths = []
    for item in items:
        path = folder / f"{item.question_id}.png"
        item.image().save(path)
        paths.append(path)

    from redgraph.decoding.prefix_cache import prefix_cache_of
    from redgraph.models.vision_cache import vision_cache_of

    vision, prefixes = vision_cache_of(context.answerer.model), prefix_cache_of(context.answerer.model)

    def run_once(index: int, repeat: int) -> tuple[float, float]:
        vision.clear()
        prefixes.clear()
        inside[0] = 0.0
        started = time.perf_counter()
        checkpoint = folder / "c.sqlite" if args.checkpoint == "sqlite" else "memory"
        ask(paths[index], items[index].question, context, checkpoint=checkpoint,
            thread_id=f"r{repeat}-{index}", trace_path=folder / f"t{repeat}-{index}.json")
        total = time.perf_counter() - started
        return total, inside[0]

    for index in range(len(items)):  # warm-up
        run_once(index, -1)
    parts.clear()
    shares, totals = [], []
    for repeat in range(args.repeats):
        for index in range(len(items)):
            total, model_time = run_once(index, repeat)
            shares.append((total - model_time) / total)
            totals.append(total)

    runs = args.repeats * len(items)
    ms_per_ask = {part: round(1000 * spent / runs, 3) for part, spent in sorted(parts.items())}
    ms_per_ask["rest"] = round(1000 * sum(totals) / runs - sum(ms_per_ask.values()), 2)
    item = items[0]
    picture = item.image()
    claims = [text for text, _ in item.claims] * 8
    eight, one = claims[:8], claims[:1]
    scorers = {"probes": LocalCritic(context.answerer).score_claims,
               "p_yes": LocalCritic(context.answerer, scoring="p_yes").score_claims}
    samples = {(name, key): [] for name in scorers for key in ("8", "1")}
    for name, score in scorers.items():
        score(picture, eight)  # warm-up
        for _ in range(args.repeats * 2):
            for key, group in (("8", eight), ("1", one)):
                prefixes.clear()
                started = time.perf_counter()
                score(picture, group)
                samples[name, key].append(time.perf_counter() - started)
    median = {key: statistics.median(values) for key, values in samples.items()}
    report = {
        "graph_overhead_share": round(statistics.median(shares), 4),
        "ask_seconds_median": round(statistics.median(totals), 4),
        "critic_8_vs_1": round(median["probes", "8"] / median["probes", "1"], 3),
        "critic_1_claim_seconds": round(median["probes", "1"], 4),
        "critic_8_claims_seconds": round(median["probes", "8"], 4),
        "critic_p_yes_8_vs_1": round(median["p_yes", "8"] / median["p_yes", "1"], 3),
        "critic_p_yes_1_claim_seconds": round(median["p_yes", "1"], 4),
        "ms_per_ask": ms_per_ask,
    }
    print(json.dumps(report) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
