"""How often each prompt-library style makes the local reasoner write claims the critic can check.

    python benchmarks/checkable_claims.py [--items 60] [--model FOLDER] [--json]

For the first ``--items`` held-out test items (kinds rotate shapes, bars, documents), each style
of :data:`redgraph.agents.prompt_library.STYLES` writes one rationale with the local reasoner.
Reported per style: the share of rationales with at least one claim a decomposer turns into a
question (the rest are ``unchecked`` and never accepted), the share of all claims that are, and
the share of rationales whose every claim is true of the scene (:func:`redgraph.data.claims.parse_claim`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=60)
    parser.add_argument("--model", default=None, help="checkpoint folder (default: the embedded model)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from redgraph.agents.decompose import GrammarDecomposer
    from redgraph.agents.prompt_library import STYLES
    from redgraph.agents.rationale_text import split_claims
    from redgraph.agents.reasoner import LocalReasoner
    from redgraph.data import generate_items
    from redgraph.data.claims import parse_claim
    from redgraph.models.loading import load_lvlm

    lvlm = load_lvlm(args.model)
    items = list(generate_items("test", args.items))
    grammar = GrammarDecomposer()
    report = {"model": lvlm.name, "items": len(items), "styles": {}}
    for style in STYLES:
        reasoner = LocalReasoner(lvlm, styles=(style,))
        checkable = claims_total = claims_checkable = all_true = 0
        examples = []
        for item in items:
            [rationale] = reasoner.write(item.image(), item.question)
            claims = split_claims(rationale.text)
            asked = [p is not None for p in grammar.decompose(claims)]
            claims_total += len(claims)
            claims_checkable += sum(asked)
            checkable += any(asked)
            parsed = [parse_claim(c) for c in claims]
            all_true += bool(parsed) and all(c is not None and c.holds(item.scene) for c in parsed)
            if len(examples) < 3:
                examples.append(rationale.text)
        report["styles"][style] = {
            "checkable_rationales": round(checkable / len(items), 3),
            "checkable_claims": round(claims_checkable / claims_total, 3) if claims_total else 0.0,
            "all_claims_true": round(all_true / len(items), 3), "examples": examples,
        }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for style, row in report["styles"].items():
            print(f"{style:13s} checkable rationales {row['checkable_rationales']:.3f}  claims "
                  f"{row['checkable_claims']:.3f}  all true {row['all_claims_true']:.3f}  e.g. {row['examples'][0]!r:.70}")
    return report


if __name__ == "__main__":
    main()
