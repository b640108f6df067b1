"""SDRT on the embedded model: traces, weighting, distillation, against a gold-answer control and
the ablations, measured on the held-out test split.

    python benchmarks/distill.py --json [--model FOLDER] [--items 1200] [--eval-limit 300] [--steps 300]
                                 [--out runs/distill] [--traces FOLDER] [--only sdrt,control] [--student FOLDER]

1. ``redgraph distill traces``: ``--items`` fresh train-split items (seed 1), ``--per-style`` traces
   each in the ``facts`` style (the only style the embedded model was trained on; the others are
   sampled at temperature 0.7), the teacher's answer from each, the critic's support.
2. The base model and every variant below, on the first ``--eval-limit`` test items:
   ``redgraph embedded evaluate``'s metrics, and the local critic's precision and recall of
   flagging the items' false labelled claims (support below 0.5).
3. Variants, each an adapter trained for the same steps and batch on the same items:
   ``sdrt`` (defaults), ``control`` (gold answers), ``no_intervention``, ``no_skip``,
   ``uniform_weights`` (no style or agreement weighting), ``no_critic`` (no critic factor), and
   ``lora`` (the peft alternative: rank 4 on every language layer's query and value projections).

Everything is written under ``--out``; re-running resumes the traces and re-trains the adapters.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def variants():
    from redgraph.distill.student import DistillConfig
    from redgraph.distill.weights import WeightConfig
    from redgraph.models.adapter import AdapterConfig

    base = DistillConfig()
    return {
        "sdrt": base,
        "control": dataclasses.replace(base, targets="gold"),
        "no_intervention": dataclasses.replace(base, adapter=AdapterConfig(layers=(), skip_layer=2)),
        "no_skip": dataclasses.replace(base, adapter=AdapterConfig(layers=(1,), skip_layer=None)),
        "uniform_weights": dataclasses.replace(base, weighting=WeightConfig(agreement=False, style_weights="uniform")),
        "no_critic": dataclasses.replace(base, weighting=WeightConfig(critic=False)),
        "lora": dataclasses.replace(base, adapter=AdapterConfig(layers=(0, 1, 2, 3), rank=4, skip_layer=None, kind="lora")),
    }


def critic_scores(lvlm, items) -> dict:
    """The local critic (probes) on every labelled claim: precision and recall of flagging false ones."""
    from redgraph.agents.critic import LocalCritic

    critic = LocalCritic(lvlm)
    flagged = caught = false = 0
    for item in items:
        checks = critic.score_claims(item.image(), [text for text, _ in item.claims])
        for (_, label), check in zip(item.claims, checks):
            false += not label
            flagged += not check.supported
            caught += (not check.supported) and not label
    return {"critic_precision": round(caught / flagged, 4) if flagged else None,
            "critic_recall": round(caught / false, 4) if false else None}


def taught(records: list[dict], config) -> dict:
    """What the student is taught: per scene kind, the kept traces (or, for the control, the items)
    and how often their answer is the gold answer."""
    from collections import defaultdict

    from redgraph.distill.weights import weigh_traces
    from redgraph.eval.normalize import answers_match

    if config.targets == "gold":
        kinds = defaultdict(set)
        for record in records:
            kinds[record["kind"]].add(record["question_id"])
        return {kind: {"n": len(ids), "answer_acc": 1.0} for kind, ids in sorted(kinds.items())}
    kept = defaultdict(list)
    for record, weight in weigh_traces(records, config.weighting).kept:
        kept[record["kind"]].append((weight, answers_match(record["answer"], record["gold_answer"])))
    return {kind: {"n": len(pairs), "answer_acc": round(sum(w * ok for w, ok in pairs) / sum(w for w, _ in pairs), 3)}
            for kind, pairs in sorted(kept.items())}


def measure(lvlm, limit: int) -> dict:
    from redgraph.data.synthetic import generate_items
    from redgraph.lab.evaluate import evaluate

    summary = evaluate(lvlm, split="test", limit=limit)
    row = {**summary["overall"], **critic_scores(lvlm, list(generate_items("test", limit)))}
    row["image_answer_acc_per_kind"] = {kind: values["image_answer_acc"] for kind, values in summary["per_kind"].items()}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="teacher and critic (default: the embedded model)")
    parser.add_argument("--student", default=None, help="the model distilled into and measured (default: --model); "
                                                        "the embedded model's folder is redgraph/models/embedded/weights")
    parser.add_argument("--items", type=int, default=1200)
    parser.add_argument("--per-style", type=int, default=4)
    parser.add_argument("--eval-limit", type=int, default=300)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--only", default=None, help="comma-separated variants (default: all)")
    parser.add_argument("--out", default="runs/distill")
    parser.add_argument("--traces", default=None, help="an existing trace folder to use (default: OUT/traces, made "
                                                       "or resumed here)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import dataclasses as dc

    from redgraph.distill.student import distill
    from redgraph.distill.traces import TraceConfig, generate_traces, read_traces
    from redgraph.models.adapter import load_adapter
    from redgraph.models.loading import load_lvlm

    out = Path(args.out)
    started = time.perf_counter()
    lvlm = load_lvlm(args.model)
    folder = Path(args.traces) if args.traces else out / "traces"
    traces = generate_traces(TraceConfig(limit=args.items, per_style=args.per_style, model=args.model), folder,
                             lvlm=lvlm)
    trace_seconds = round(time.perf_counter() - started, 1)
    records, _ = read_traces([folder])
    results = {"traces": traces, "trace_seconds": trace_seconds, "rows": {}}
    results_path = out / "results.json"
    if results_path.exists():
        earlier = json.loads(results_path.read_text())
        results["rows"] = earlier["rows"]
        if not traces["written"]:  # the traces were written by an earlier run: keep its time
            results["trace_seconds"] = earlier.get("trace_seconds", trace_seconds)
    student_name = args.student or args.model
    results["student"], results["teacher"] = student_name or "embedded", args.model or "embedded"
    if "base" not in results["rows"]:
        results["rows"]["base"] = measure(lvlm if student_name == args.model else load_lvlm(student_name),
                                          args.eval_limit)
    chosen = variants()
    if args.only:
        chosen = {name: chosen[name] for name in args.only.split(",")}
    for name, config in chosen.items():
        config = dc.replace(config, steps=args.steps)
        student = load_lvlm(student_name)
        adapter, manifest = distill(student, records, config, out_dir=out / name)
        adapter.detach()
        began = time.perf_counter()
        load_adapter(student, out / name)
        load_seconds = time.perf_counter() - began
        row = measure(student, args.eval_limit)
        row.update(weighting=manifest["weighting"], train_seconds=manifest["seconds"], final_loss=round(
            manifest["final_loss_mean_last_20"], 4), adapter_bytes=manifest["size_bytes"],
            adapter_load_seconds=round(load_seconds, 3), trainable_parameters=manifest["trainable_parameters"],
            taught=taught(records, config))
        results["rows"][name] = row
        results_path.write_text(json.dumps(results, indent=2) + "\n")
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        print(json.dumps(results, indent=2))
        return
    metrics = ("image_answer_acc", "rationale_fact_acc", "rationale_answer_acc", "critic_precision", "critic_recall")
    print("| variant | " + " | ".join(metrics) + " |")
    print("|---" * (len(metrics) + 1) + "|")
    for name, row in results["rows"].items():
        print(f"| {name} | " + " | ".join(str(row.get(m)) for m in metrics) + " |")


if __name__ == "__main__":
    main()
