"""Where an ``ask``'s milliseconds outside the models go, step by step, and what LangGraph's loop costs.

    python benchmarks/graph_phases.py --json [--repeats 20]

The embedded model as reasoner, critic and answerer (one rationale, one round, 8 answer tokens), three
held-out items, SQLite checkpoints in a temporary folder, the trace written. Variants are alternated
ask by ask in one process (these machines drift between processes), after a warm-up:

- ``shipped``: ``ask`` as it is.
- ``default_executor``: the run's LangChain config without ``max_concurrency=1``, as before
  2026-12-06: LangGraph's per-run executor then starts two or three threads to write checkpoints.
- ``inline_writes`` (an experiment, not something redgraph does): LangGraph's background executor
  patched to run each checkpoint write in the calling thread at once. What the hand-offs to a
  writer thread cost.
- ``no_step_writes`` (an experiment): ``durability="exit"``, no checkpoint until the run ends. What
  LangGraph's loop costs with no per-step writes at all (``ask`` keeps every finished step).

For each: medians of the milliseconds outside the models and of their share of the ``ask``, and
the mean milliseconds of each phase: before the stream, the stream's set-up to the first node,
inside each node outside its model, each hand-over between nodes, after the last node to the
stream's end, and after the stream (reading the state, closing and writing the trace).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VARIANTS = ("shipped", "default_executor", "inline_writes", "no_step_writes")
NODES = ("receive", "reason", "critique", "decide", "answer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=20, help="asks of each variant for each item")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or not variants:
        parser.error(f"--variants {args.variants!r}: choose among {', '.join(VARIANTS)}")

    from langgraph.pregel import _executor
    from langgraph.pregel import main as pregel

    from redgraph.agents import answerer
    from redgraph.data import generate_items
    from redgraph.decoding.prefix_cache import prefix_cache_of
    from redgraph.graphs import ask, make_context, nodes, run
    from redgraph.models.vision_cache import vision_cache_of

    marks: list[tuple[str, float]] = []
    inside = [0.0]
    variant = ["shipped"]

    def timed_model(fn):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            started = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                inside[0] += time.perf_counter() - started
        return wrapper

    def marked(name, fn):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            before = inside[0]
            marks.append((f"start {name}", time.perf_counter()))
            try:
                return fn(*a, **k)
            finally:
                marks.append((f"end {name}", time.perf_counter()))
                marks.append((f"model {name}", inside[0] - before))
        return wrapper

    for name in NODES:  # before the graph is compiled (on the first ask), so that it takes these
        setattr(nodes, name, marked(name, getattr(nodes, name)))

    stream = pregel.Pregel.stream

    def stream_marked(self, *a, **k):
        if variant[0] == "no_step_writes":
            k["durability"] = "exit"
        marks.append(("stream", time.perf_counter()))
        yield from stream(self, *a, **k)
        marks.append(("stream end", time.perf_counter()))

    pregel.Pregel.stream = stream_marked
    shipped_limits = run.one_step_at_a_time

    @contextlib.contextmanager
    def limits(on_token):
        with shipped_limits(on_token) as keys:
            yield {} if variant[0] == "default_executor" else keys

    run.one_step_at_a_time = limits
    submit = _executor.BackgroundExecutor.submit

    def submit_maybe_inline(self, fn, *a, __name__=None, __cancel_on_exit__=False, __reraise_on_exit__=True,
                            __next_tick__=False, **k):
        if variant[0] != "inline_writes":
            return submit(self, fn, *a, __name__=__name__, __cancel_on_exit__=__cancel_on_exit__,
                          __reraise_on_exit__=__reraise_on_exit__, __next_tick__=__next_tick__, **k)
        future = concurrent.futures.Future()
        try:
            future.set_result(fn(*a, **k))
        except BaseException as exc:  # noqa: BLE001 - handed to LangGraph as its executor would
            future.set_exception(exc)
        return future

    _executor.BackgroundExecutor.submit = submit_maybe_inline

    context = make_context(None, rationales=1, rounds=1, max_new_tokens=8)
    context.reasoner.write = timed_model(context.reasoner.write)
    context.critic.review = timed_model(context.critic.review)
    answerer.answer_with_red = timed_model(answerer.answer_with_red)
    items = list(generate_items("test", 3))
    folder = Path(tempfile.mkdtemp())
    paths = []
    for item in items:
        paths.append(folder / f"{item.question_id}.png")
        item.image().save(paths[-1])
    vision, prefixes = vision_cache_of(context.answerer.model), prefix_cache_of(context.answerer.model)

    results = {name: {"outside": [], "share": [], "ask": [], "phases": collections.defaultdict(float)}
               for name in variants}
    for repeat in range(-1, args.repeats):
        for index in range(len(items)):
            for name in variants:
                variant[0] = name
                vision.clear()
                prefixes.clear()
                marks.clear()
                inside[0] = 0.0
                marks.append(("ask", time.perf_counter()))
                ask(paths[index], items[index].question, context, checkpoint=folder / "c.sqlite",
                    trace_path=folder / "t.json")
                marks.append(("done", time.perf_counter()))
                if repeat < 0:
                    continue  # warm-up
                result = results[name]
                total = marks[-1][1] - marks[0][1]
                result["ask"].append(total)
                result["outside"].append(total - inside[0])
                result["share"].append((total - inside[0]) / total)
                models = {label[6:]: spent for label, spent in marks if label.startswith("model")}
                times = [(label, at) for label, at in marks if not label.startswith("model")]
                for (before, start), (after, end) in zip(times, times[1:]):
                    if before.startswith("start") and after.startswith("end"):  # a node, less its model
                        result["phases"][f"inside {after[4:]}"] += end - start - models[after[4:]]
                    else:
                        result["phases"][f"{before} -> {after}"] += end - start

    runs = args.repeats * len(items)
    report = {"runs_per_variant": runs, "variants": {}}
    for name, result in results.items():
        report["variants"][name] = {
            "outside_ms_median": round(1000 * statistics.median(result["outside"]), 2),
            "share_median": round(statistics.median(result["share"]), 4),
            "ask_ms_median": round(1000 * statistics.median(result["ask"]), 1),
            "phases_ms": {phase: round(1000 * spent / runs, 2) for phase, spent in result["phases"].items()},
        }
    if not args.json:
        for name, figures in report["variants"].items():
            print(f"{name}: outside {figures['outside_ms_median']} ms of {figures['ask_ms_median']} ms "
                  f"(share {figures['share_median']})")
            for phase, ms in figures["phases_ms"].items():
                print(f"    {ms:6.2f} ms  {phase}")
        return
    print(json.dumps(report))


if __name__ == "__main__":
    main()
