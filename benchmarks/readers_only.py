"""What the readers read, without the model: for each question of a picture set, the reading
reasoner's own answer (what it would write in its rationale) against the gold answer.

    python benchmarks/readers_only.py --folder DIR [--limit N] [--json] [--out FILE]

DIR holds a ``manifest.json`` as :mod:`benchmarks.heldout_pictures` (or ``dev_pictures.py``) writes
it. This measures the readers alone (RapidOCR, the document reader, the chart reader): an upper
bound for what ``redgraph.ask`` can answer right through them, and where they abstain. Each kind of
question: right, wrong, abstained (the readers wrote nothing), with Wilson 95% intervals; seconds
per picture (text reader and chart reader, once per picture).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from heldout_pictures import match_answer  # noqa: E402
from reading_heldout import wilson  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None, help="first N pictures")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from redgraph.agents.reading import read_for, read_picture
    from redgraph.graphs.run import open_document_of
    from redgraph.models.documents import READING_PIXELS, render_page
    from redgraph.models.images import load_image

    manifest = json.loads((args.folder / "manifest.json").read_text(encoding="utf-8"))
    pictures = manifest["pictures"][: args.limit]
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])  # right, wrong, abstained
    rows, seconds = [], []
    for entry in pictures:
        path = args.folder / entry["file"]
        document = open_document_of(path)
        if document is not None:
            with document:
                picture = render_page(document, 1, target=READING_PIXELS)  # as ask renders it with the readers on
        else:
            picture = load_image(str(path))
        started = time.perf_counter()
        read_picture(picture)
        seconds.append(time.perf_counter() - started)
        for question in entry["questions"]:
            reading = read_for(picture, question["question"])
            right = reading.answer is not None and match_answer(reading.answer, question["gold"], question["match"])
            slot = 0 if right else 2 if reading.answer is None else 1
            for key in ((entry["tool"], question["qkind"]), (entry["tool"], "all"), ("all", "all")):
                counts[key][slot] += 1
            rows.append({"id": question["id"], "question": question["question"], "gold": question["gold"],
                         "read": reading.answer, "right": right, "abstained": list(reading.abstained)})
    table = {f"{tool}/{kind}": {"right": c[0], "wrong": c[1], "abstained": c[2], "n": sum(c),
                                "right_rate": round(c[0] / sum(c), 3), "interval": wilson(c[0], sum(c))}
             for (tool, kind), c in sorted(counts.items())}
    seconds.sort()
    summary = {"folder": str(args.folder), "pictures": len(pictures), "by_tool_and_kind": table,
               "seconds_per_picture_median": round(seconds[len(seconds) // 2], 3) if seconds else None}
    if args.out:
        args.out.write_text(json.dumps({**summary, "answers": rows}, indent=1, ensure_ascii=False), encoding="utf-8")
    if args.json:
        print(json.dumps(summary))
    else:
        print("| tool / kind | right | wrong | abstained | right rate (95% interval) |\n| --- | --- | --- | --- | --- |")
        for key, row in table.items():
            low, high = row["interval"]
            print(f"| {key} | {row['right']} | {row['wrong']} | {row['abstained']} | "
                  f"{row['right_rate']:.3f} ({low:.2f}-{high:.2f}) |")
        print(f"median seconds per picture (both readers): {summary['seconds_per_picture_median']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
