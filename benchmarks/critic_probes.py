"""The question-answering critic against the P(yes) critic, per claim kind and per scene kind, with
``redgraph eval`` on the held-out test split.

    python benchmarks/critic_probes.py --json [--model FOLDER] [--limit 300] [--out runs/critic]

One model, the first ``--limit`` held-out test items (kinds rotate shapes, bars, documents):
1. ``direct`` answers (the model's eyes: image_answer_acc per category and scene kind) and plain RED
   (lambda 1, no critic) with honest (gold) and lying (half misleading) rationales;
2. for each critic scoring (``probes``, ``p_yes``): the critic on every labelled claim, and the whole
   graph with the honest and the lying reasoner (answer from the image when the rationale is still
   rejected after 2 rounds).

Reported per scene kind and per claim kind: critic precision and recall of flagging false claims
(flagged: support below 0.5), next to image_answer_acc for the same kinds; lying-reasoner retention
(graph accuracy, lying / honest) and plain RED's; the share of honest rationales the graph accepted
(a critic that rejects everything keeps retention at 1 by answering from the image alone). Re-running
with the same ``--out`` resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCORINGS = ("probes", "p_yes")
# The image-answer categories whose questions a claim kind's probes ask.
CATEGORIES_OF_CLAIM = {
    "count_colour": ("count_colour",), "count_shape": ("count_shape",), "shape_colour": ("shape_colour",),
    "exists": ("exists",), "relation": ("relation_lr", "relation_ab"), "size": ("size",),
    "bar_value": ("bar_value",), "bar_extreme": ("tallest", "shortest"), "bar_compare": ("bar_compare",),
    "title": ("title",), "field": ("field",),
}


def read_predictions(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines() if line.strip()]


def precision_recall(claims: list[dict]) -> dict:
    flagged = [c for c in claims if c["flagged"]]
    false = [c for c in claims if not c["label"]]
    caught = [c for c in flagged if not c["label"]]
    return {"claims": len(claims), "false": len(false),
            "precision": round(len(caught) / len(flagged), 3) if flagged else None,
            "recall": round(len(caught) / len(false), 3) if false else None}


def accuracy(records: list[dict]) -> float | None:
    return round(sum(r["correct"] for r in records) / len(records), 3) if records else None


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--model", default=None, help="checkpoint folder (default: the embedded model)")
    parser.add_argument("--limit", type=int, default=300, help="held-out items")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a new temporary one)")
    args = parser.parse_args()

    from redgraph.data import export_dataset
    from redgraph.data.claims import parse_claim
    from redgraph.eval.plan import EvalConfig
    from redgraph.eval.runner import run_eval
    from redgraph.models.loading import load_lvlm

    out = args.out or Path(tempfile.mkdtemp(prefix="redgraph-critic-"))
    data = out / "data"
    if not (data / "test.jsonl").exists():
        export_dataset(data, {"test": args.limit})
    lvlm = load_lvlm(args.model)
    common = {"dataset": str(data), "split": "test", "limit": args.limit, "model": args.model, "lambdas": (1.0,),
              "graph_lambda": 1.0, "max_new_tokens": 8}
    run_eval(EvalConfig(modes=("direct", "red"), sources=("gold", "lying"), **common), out / "answers", lvlm=lvlm)
    answers = read_predictions(out / "answers")
    items = [json.loads(line) for line in (data / "test.jsonl").read_text().splitlines()][: args.limit]
    kind_of = {item["question_id"]: item["kind"] for item in items}

    def kind_of_claim(text: str) -> str:
        parsed = parse_claim(text)
        return parsed.kind if parsed else "other"

    def rows(records: list[dict], mode: str, source: str = "-", kind: str | None = None,
             categories: tuple[str, ...] | None = None) -> list[dict]:
        return [r for r in records if r["mode"] == mode and r["source"] == source
                and (kind is None or kind_of[r["question_id"]] == kind)
                and (categories is None or r["category"] in categories)]

    kinds = ("shapes", "bars", "document")
    eyes = {kind: accuracy(rows(answers, "direct", kind=kind)) for kind in kinds}
    eyes["overall"] = accuracy(rows(answers, "direct"))
    plain_red = {kind: ratio(accuracy(rows(answers, "red", "lying", kind)),
                             accuracy(rows(answers, "red", "gold", kind))) for kind in (*kinds, None)}
    result: dict = {"model": args.model or "embedded", "items": len(items), "image_answer_acc": eyes,
                    "plain_red_lying_retention": {k or "overall": v for k, v in plain_red.items()}, "scorings": {}}
    for scoring in SCORINGS:
        folder = out / scoring
        run_eval(EvalConfig(modes=("critic", "graph"), sources=("gold", "lying"), critic_scoring=scoring, **common),
                 folder, lvlm=lvlm)
        records = read_predictions(folder)
        claims = [dict(c, kind=kind_of[r["question_id"]], claim_kind=kind_of_claim(c["text"]))
                  for r in records if r["mode"] == "critic" for c in r["claims"]]
        by_scene = {kind: precision_recall([c for c in claims if c["kind"] == kind]) for kind in kinds}
        by_scene["overall"] = precision_recall(claims)
        by_claim = {}
        for claim_kind, categories in CATEGORIES_OF_CLAIM.items():
            figures = precision_recall([c for c in claims if c["claim_kind"] == claim_kind])
            figures["image_answer_acc"] = accuracy(rows(answers, "direct", categories=categories))
            by_claim[claim_kind] = figures
        retention = {}
        for kind in (*kinds, None):
            honest = accuracy(rows(records, "graph", "gold", kind))
            lying = accuracy(rows(records, "graph", "lying", kind))
            accepted = [r["outcome"] == "accepted" for r in rows(records, "graph", "gold", kind)]
            retention[kind or "overall"] = {"honest_acc": honest, "lying_acc": lying, "retention": ratio(lying, honest),
                                            "honest_accepted": round(sum(accepted) / len(accepted), 3)}
        methods = defaultdict(int)
        for c in claims:
            methods[c.get("method", "p_yes")] += 1
        result["scorings"][scoring] = {"by_scene_kind": by_scene, "by_claim_kind": by_claim,
                                       "lying_reasoner_retention": retention, "methods": dict(methods)}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    for scoring, figures in result["scorings"].items():
        print(f"\n## critic scoring: {scoring}\n")
        print("| scene kind | image_answer_acc | precision | recall | honest accepted | graph honest | graph lying |"
              " retention | plain RED retention |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for kind in (*kinds, "overall"):
            pr, keep = figures["by_scene_kind"][kind], figures["lying_reasoner_retention"][kind]
            print(f"| {kind} | {eyes[kind]} | {pr['precision']} | {pr['recall']} | {keep['honest_accepted']} | "
                  f"{keep['honest_acc']} | "
                  f"{keep['lying_acc']} | {keep['retention']} | {result['plain_red_lying_retention'][kind]} |")
        print("\n| claim kind | claims (false) | image_answer_acc | precision | recall |")
        print("| --- | --- | --- | --- | --- |")
        for claim_kind, pr in figures["by_claim_kind"].items():
            print(f"| {claim_kind} | {pr['claims']} ({pr['false']}) | {pr['image_answer_acc']} | {pr['precision']} | "
                  f"{pr['recall']} |")


if __name__ == "__main__":
    main()
