"""The critic with an OCR expert beside the model's own eyes, on documents the model never trained on.

    python benchmarks/ocr_expert.py [--items 100] [--model FOLDER] [--json]

Sources (held-out test items, ``--items`` each):
- ``own``: documents drawn by the project's renderer (what the embedded model trained on);
- ``fonts``: the same scenes drawn in DejaVu fonts at random sizes and margins
  (:mod:`redgraph.data.tools`; never in training);
- ``fonts_scan``: those pictures as a scanner or phone would give them: JPEG quality 35-70,
  rotated up to 2 degrees, a slight blur (also never in training).

1. **Engines.** Each OCR engine reads each picture's title and fields through
   :class:`~redgraph.agents.experts.OcrExpert`: the share read exactly (and sure), and the time per
   picture. Tesseract with page segmentation 6 (the default) and 3; RapidOCR (ONNX) where
   ``rapidocr_onnxruntime`` is installed.
2. **Critic.** Every labelled claim of each item, scored by ``LocalCritic.score_claims`` with the
   LVLM alone (the default), and with the OCR expert under each combining rule. A claim is
   *flagged* when the critic does not accept it (unsupported, unsure or unchecked). Reported on
   text claims (titles and fields) and on all claims: precision and recall of flagging false claims,
   the false claims accepted, the true claims accepted, and the critic's time per claim.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SOURCES = ("own", "fonts", "fonts_scan")
TEXT_KINDS = ("title", "field")


def scanned(picture, rng: random.Random):
    from PIL import Image, ImageFilter

    rotated = picture.rotate(rng.uniform(-2.0, 2.0), resample=Image.Resampling.BICUBIC, expand=True, fillcolor="white")
    blurred = rotated.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 0.6)))
    buffer = io.BytesIO()
    blurred.save(buffer, format="JPEG", quality=rng.randint(35, 70))
    buffer.seek(0)
    with Image.open(buffer) as jpeg:
        return jpeg.convert("RGB")


def items(source: str, count: int) -> list:
    from redgraph.data.synthetic import items_of_kind
    from redgraph.data.tools import tool_items

    if source == "own":
        return [(item, item.image()) for item in items_of_kind("test", "document", count)]
    drawn = list(tool_items("fonts", count))
    if source == "fonts":
        return drawn
    return [(item, scanned(picture, random.Random(f"scan:{item.question_id}"))) for item, picture in drawn]


class RapidEngine:
    """RapidOCR (ONNX Runtime) behind the OcrEngine interface, for the comparison only."""

    def __init__(self) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self.ocr = RapidOCR()

    def read(self, picture):
        import numpy as np

        from redgraph.models.ocr import OcrLine, OcrPage, OcrWord

        found, _ = self.ocr(np.array(picture.convert("RGB")))
        lines = []
        for points, text, score in found or []:
            xs, ys = [int(p[0]) for p in points], [int(p[1]) for p in points]
            box = (min(xs), min(ys), max(xs), max(ys))
            lines.append(OcrLine(tuple(OcrWord(word, box, float(score)) for word in text.split())))
        lines = [line for line in lines if line.words]
        return OcrPage(picture.size, tuple(sorted(lines, key=lambda line: (line.box[1], line.box[0]))))


def engines() -> dict:
    from redgraph.models.ocr import OcrEngine

    found = {"tesseract psm 6 (default)": OcrEngine(), "tesseract psm 6, small pictures x2": OcrEngine(scale=2),
             "tesseract psm 3": OcrEngine(psm=3)}
    try:
        found["rapidocr"] = RapidEngine()
    except ImportError:
        pass
    return found


def engine_accuracy(data: dict) -> dict:
    from redgraph.agents.experts import OcrExpert
    from redgraph.data import questions
    from redgraph.decoding.probes import Probe

    report = {}
    for name, engine in engines().items():
        expert = OcrExpert(engine)
        for source, pairs in data.items():
            right = total = sure_right = sure_total = 0
            seconds = 0.0
            for item, picture in pairs:
                scene = item.scene
                probes = [Probe(questions.title(), scene.title, family="title")]
                probes += [Probe(questions.field(field), str(value), family="field") for field, value in scene.fields]
                started = time.perf_counter()
                readings = expert.read(picture, probes)
                seconds += time.perf_counter() - started
                for reading in readings:
                    correct = reading.sure and reading.support >= 0.5
                    right += correct
                    total += 1
                    sure_total += reading.sure
                    sure_right += correct
            report[f"{name} | {source}"] = {"read_exactly": round(right / total, 3),
                                            "sure_readings_right": round(sure_right / max(1, sure_total), 4),
                                            "ms_per_picture": round(1000 * seconds / len(pairs), 1)}
            print(name, source, report[f"{name} | {source}"], file=sys.stderr)
    return report


def critic_figures(lvlm, data: dict) -> dict:
    from redgraph.agents.critic import LocalCritic
    from redgraph.agents.experts import OcrExpert
    from redgraph.data.claims import parse_claim

    critics = {"lvlm (default)": LocalCritic(lvlm),
               "lvlm+ocr, agree": LocalCritic(lvlm, experts=(OcrExpert(),), combine="agree"),
               "lvlm+ocr, veto": LocalCritic(lvlm, experts=(OcrExpert(),), combine="veto")}
    report = {}
    for source, pairs in data.items():
        for name, critic in critics.items():
            rows, seconds = [], 0.0
            for item, picture in pairs:
                texts = [text for text, _ in item.claims]
                started = time.perf_counter()
                checks = critic.score_claims(picture, texts)
                seconds += time.perf_counter() - started
                for (text, label), check in zip(item.claims, checks):
                    claim = parse_claim(text)
                    rows.append({"kind": claim.kind if claim else None, "label": label, "status": check.status})
            entry = {"all": _flags(rows), "text": _flags([r for r in rows if r["kind"] in TEXT_KINDS]),
                     "ms_per_claim": round(1000 * seconds / max(1, len(rows)), 1)}
            report[f"{name} | {source}"] = entry
            print(name, source, entry, file=sys.stderr)
    return report


def _flags(rows: list[dict]) -> dict:
    flagged = [r for r in rows if r["status"] != "supported"]
    false = [r for r in rows if not r["label"]]
    true = [r for r in rows if r["label"]]
    caught = sum(not r["label"] for r in flagged)
    return {"claims": len(rows), "false": len(false),
            "precision": round(caught / len(flagged), 3) if flagged else None,
            "recall": round(caught / len(false), 3) if false else None,
            "false_accepted": sum(r["status"] == "supported" for r in false),
            "true_accepted": round(sum(r["status"] == "supported" for r in true) / len(true), 3) if true else None,
            "unsure": sum(r["status"] == "unsure" for r in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--model", default=None, help="a checkpoint folder (default: the embedded model)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import redgraph

    lvlm = redgraph.load_lvlm(args.model) if args.model else redgraph.load_embedded()
    data = {source: items(source, args.items) for source in SOURCES}
    report = {"items_per_source": args.items, "engines": engine_accuracy(data), "critic": critic_figures(lvlm, data)}
    print(json.dumps(report, indent=2) if args.json else report)


if __name__ == "__main__":
    main()
