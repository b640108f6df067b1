"""What a user of the defaults gets: a lying reasoner against an honest one, and answers on pictures
drawn by tools the model never trained on. Every run is ``redgraph.ask`` with ``make_context``'s
defaults; only the reasoner is chosen.

    python benchmarks/honest_defaults.py [--items 30] [--tool-items 60] [--model FOLDER] [--json]

1. **Lying reasoner.** For the first ``--items`` held-out test items of each scene kind (bars,
   documents, shapes): one run whose reasoner always writes the item's misleading rationale, one
   whose reasoner writes its gold rationale. Reported: accuracy of each and their ratio (the goal:
   lying / honest >= 0.95), with each run's outcome.
2. **Other drawing tools.** ``--tool-items`` test items per tool of :mod:`redgraph.data.tools`
   (bar charts by matplotlib, documents in DejaVu fonts), with the default reasoner (the model
   itself). Each answer is right or wrong, and either *accepted with no flag* (the outcome
   ``accepted`` and no flag at all: what a user would take on trust) or flagged. The goal: wrong
   answers accepted with no flag <= 5% of all answers; the cost is the right answers that came
   back flagged (unsure, or answered from the image alone).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KINDS = ("bars", "document", "shapes")


def _run(lvlm, picture, item, reasoner=None) -> dict:
    import redgraph
    from redgraph.eval.normalize import answers_match

    context = redgraph.make_context(lvlm) if reasoner is None else redgraph.make_context(lvlm, reasoner=reasoner)
    result = redgraph.ask(picture, item.question, context, checkpoint="memory")
    return {"question_id": item.question_id, "category": item.category, "answer": result.answer,
            "expected": item.answer, "correct": answers_match(result.answer or "", item.answer),
            "outcome": result.outcome, "verdict": result.verdict, "flags": result.flags}


def lying_reasoner(lvlm, items: int) -> dict:
    from redgraph.agents import ScriptedReasoner
    from redgraph.data.synthetic import items_of_kind

    report = {}
    for kind in KINDS:
        runs = {"honest": [], "lying": []}
        for item in items_of_kind("test", kind, items):
            runs["honest"].append(_run(lvlm, item.image(), item, ScriptedReasoner([item.gold_rationale])))
            runs["lying"].append(_run(lvlm, item.image(), item, ScriptedReasoner([item.misleading_rationale])))
        honest = sum(r["correct"] for r in runs["honest"]) / len(runs["honest"])
        lying = sum(r["correct"] for r in runs["lying"]) / len(runs["lying"])
        report[kind] = {"items": len(runs["honest"]), "honest": round(honest, 3), "lying": round(lying, 3),
                        "ratio": round(lying / honest, 3) if honest else None,
                        "outcomes_honest": dict(Counter(r["outcome"] for r in runs["honest"])),
                        "outcomes_lying": dict(Counter(r["outcome"] for r in runs["lying"]))}
    return report


def other_tools(lvlm, items: int) -> dict:
    from redgraph.data.tools import TOOLS, tool_items

    report = {}
    for tool in TOOLS:
        runs = [_run(lvlm, picture, item) for item, picture in tool_items(tool, items)]
        trusted = [r for r in runs if r["outcome"] == "accepted" and not r["flags"]]
        right = [r for r in runs if r["correct"]]
        report[tool] = {
            "items": len(runs), "accuracy": round(len(right) / len(runs), 3),
            "wrong_accepted_unflagged": round(sum(not r["correct"] for r in trusted) / len(runs), 3),
            "right_flagged": round(sum(r["correct"] and r not in trusted for r in runs) / len(runs), 3),
            "unsure": round(sum("image_unsure" in r["flags"] for r in runs) / len(runs), 3),
            "outcomes": dict(Counter(r["outcome"] for r in runs)),
            "flags": dict(Counter(f for r in runs for f in r["flags"])),
            "per_category": {c: round(sum(r["correct"] for r in runs if r["category"] == c)
                                      / sum(r["category"] == c for r in runs), 3)
                             for c in sorted({r["category"] for r in runs})},
        }
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=30, help="test items per scene kind for the lying reasoner")
    parser.add_argument("--tool-items", type=int, default=60, help="test items per drawing tool")
    parser.add_argument("--model", default=None, help="checkpoint folder (default: the embedded model)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    from redgraph.models.loading import load_lvlm

    lvlm = load_lvlm(args.model)
    report = {"model": lvlm.name, "lying_reasoner": lying_reasoner(lvlm, args.items) if args.items else None,
              "other_tools": other_tools(lvlm, args.tool_items) if args.tool_items else None}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for kind, row in (report["lying_reasoner"] or {}).items():
            print(f"{kind:9s} honest {row['honest']:.3f}  lying {row['lying']:.3f}  ratio {row['ratio']}  "
                  f"lying outcomes {row['outcomes_lying']}")
        for tool, row in (report["other_tools"] or {}).items():
            print(f"{tool:10s} accuracy {row['accuracy']:.3f}  wrong accepted unflagged "
                  f"{row['wrong_accepted_unflagged']:.3f}  right flagged {row['right_flagged']:.3f}  {row['outcomes']}")
    return report


if __name__ == "__main__":
    main()
