"""The RED paper's tables, redone on the embedded model and the held-out synthetic split, with
``redgraph eval``.

    python benchmarks/paper_tables.py --json [--limit 200] [--out runs/paper]

Two evaluations of the same items (the first ``--limit`` of the held-out test split):
1. direct, CoT and RED (lambda in 0, 0.3, 0.5, 1, 2) with self, gold, irrelevant, misleading and
   lying (half misleading) rationales, and the critic on every labelled claim;
2. the whole graph with an honest reasoner (gold rationales) and a lying one (half of them lies).

Prints one JSON object: ``direct_acc``, ``cot_gold_acc``, ``red_gold_acc`` (best lambda),
``red_self_acc`` (best lambda), ``cot_flip_rate``, ``red_flip_rate`` (at red_gold's best lambda),
``lying_reasoner_retention`` (graph accuracy, lying / honest), ``plain_red_lying_retention`` (RED
without the critic at the graph's lambda, lying / honest), ``critic_precision``,
``critic_recall``, and the tables' markdown files. Re-running with the same ``--out`` resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GRAPH_LAMBDA = 1.0


def evaluate(data: Path, out: Path, limit: int, modes: list[str], sources: list[str]) -> dict:
    command = [sys.executable, "-m", "redgraph.cli", "eval", "run", str(data), str(out), "--split", "test",
               "--limit", str(limit), "--graph-lambda", str(GRAPH_LAMBDA), "--json"]
    for mode in modes:
        command += ["--mode", mode]
    for source in sources:
        command += ["--source", source]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"redgraph eval failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--limit", type=int, default=200, help="held-out items")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a new temporary one)")
    args = parser.parse_args()

    from redgraph.data import export_dataset
    from redgraph.eval.report import best_lambda, lookup

    out = args.out or Path(tempfile.mkdtemp(prefix="redgraph-paper-"))
    data = out / "data"
    if not (data / "test.jsonl").exists():
        export_dataset(data, {"test": args.limit})
    decoding = evaluate(data, out / "decoding", args.limit, ["direct", "cot", "red", "critic"],
                        ["self", "gold", "irrelevant", "misleading", "lying"])
    graph = evaluate(data, out / "graph", args.limit, ["graph"], ["gold", "lying"])

    def flip(summary: dict, mode: str, weight: float | None) -> float | None:
        return next((f["flip_rate"] for f in summary["flip_rates"] if f["mode"] == mode and f["lambda"] == weight), None)

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else round(a / b, 4)

    red_lambda, red_gold = best_lambda(decoding, "red", "gold")
    self_lambda, red_self = best_lambda(decoding, "red", "self")
    critic = decoding.get("critic", {})
    result = {
        "items": decoding["items"],
        "direct_acc": lookup(decoding, "direct", "-"),
        "cot_gold_acc": lookup(decoding, "cot", "gold"),
        "cot_self_acc": lookup(decoding, "cot", "self"),
        "red_gold_acc": red_gold,
        "red_gold_lambda": red_lambda,
        "red_self_acc": red_self,
        "red_self_lambda": self_lambda,
        "cot_flip_rate": flip(decoding, "cot", None),
        "red_flip_rate": flip(decoding, "red", red_lambda),
        "graph_honest_acc": lookup(graph, "graph", "gold"),
        "graph_lying_acc": lookup(graph, "graph", "lying"),
        "lying_reasoner_retention": ratio(lookup(graph, "graph", "lying"), lookup(graph, "graph", "gold")),
        "plain_red_lying_retention": ratio(lookup(decoding, "red", "lying", GRAPH_LAMBDA),
                                           lookup(decoding, "red", "gold", GRAPH_LAMBDA)),
        "critic_precision": critic.get("precision"),
        "critic_recall": critic.get("recall"),
        "critic_flagged": critic.get("flagged"),
        "critic_claims": critic.get("claims"),
        "tables": [str(out / "decoding" / "summary.md"), str(out / "graph" / "summary.md")],
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>28}: {value}")


if __name__ == "__main__":
    main()
