"""How well the critic's support reads as a probability: expected calibration error (ECE) and
reliability per scene kind on held-out labelled claims, before and after the model's calibration;
and (``--write``) fitting that calibration on the validation split into the model's folder.

    python benchmarks/calibration.py [--model FOLDER] [--items 300] [--test-items 600] [--write] [--json]

Before: raw supports (the claimed answer's share among the candidates). After: with the fitted
temperatures per probe family. Measured on the test split's labelled claims (never used to fit),
and, for information, on the same scenes drawn by other tools (:mod:`redgraph.data.tools`: their default
look and the held-out family), where
the picture-range check, not the temperatures, is what keeps answers honest. Also reports the
fitted ``unsure_below`` and novelty threshold, and the share of pictures each source finds novel.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _ece_by_kind(rows, temperatures) -> dict:
    from redgraph.lab.calibrate import claim_support, expected_calibration_error, reliability

    by_kind = defaultdict(list)
    for row in rows:
        by_kind[row["kind"]].append((claim_support(row, temperatures), row["label"]))
    by_kind["all"] = [pair for kind in list(by_kind) for pair in by_kind[kind]]
    return {kind: {"claims": len(pairs), "ece": round(expected_calibration_error(pairs), 4),
                   "reliability": reliability(pairs)} for kind, pairs in by_kind.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="checkpoint folder (default: the embedded model)")
    parser.add_argument("--items", type=int, default=300, help="validation items to fit on")
    parser.add_argument("--test-items", type=int, default=600, help="test items to measure on")
    parser.add_argument("--tool-items", type=int, default=60, help="items per other drawing tool")
    parser.add_argument("--write", action="store_true", help="fit and save the calibration into the model's folder")
    parser.add_argument("--tools", action="store_true", help="with --write: fit on other tools' pictures too (a "
                        "model trained with --tool-share)")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    args = parser.parse_args(argv)
    from redgraph.data import generate_items
    from redgraph.data.tools import TOOLS, tool_items
    from redgraph.lab.calibrate import fit_calibration, labelled_probes
    from redgraph.models.loading import load_lvlm

    lvlm = load_lvlm(args.model)
    if args.write:
        calibration = fit_calibration(lvlm, items=args.items, tools=args.tools)
        calibration.save(lvlm.path)
    else:
        calibration = lvlm.calibration
        if calibration is None:
            parser.error(f"{lvlm.name} has no calibration; run with --write to fit one")
    test = list(generate_items("test", args.test_items))
    rows = labelled_probes(lvlm, test)
    report = {"model": lvlm.name, "calibration": calibration.summary(),
              "test": {"before": _ece_by_kind(rows, {}), "after": _ece_by_kind(rows, calibration.temperatures)},
              "novel_share": {"test": sum(calibration.is_novel(calibration.novelty(lvlm, i.image())) for i in test[:200])
                              / min(200, len(test))}}
    for tool in TOOLS:
        for look in ("default", "heldout"):
            pairs = list(tool_items(tool, args.tool_items, look=look))
            name = tool if look == "default" else f"{tool}_heldout"
            report["novel_share"][name] = sum(calibration.is_novel(calibration.novelty(lvlm, p)) for _, p in pairs) / len(pairs)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"temperatures {calibration.temperatures}\nunsure_below {calibration.unsure_below}  "
              f"novelty_above {calibration.novelty_above}")
        for kind in report["test"]["before"]:
            before, after = report["test"]["before"][kind], report["test"]["after"][kind]
            print(f"{kind:9s} claims {before['claims']:5d}  ECE before {before['ece']:.4f}  after {after['ece']:.4f}")
        print("pictures found novel:", {k: round(v, 3) for k, v in report["novel_share"].items()})
    return report


if __name__ == "__main__":
    main()
