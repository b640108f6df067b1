"""The development set of users' pictures: what the readers are tuned on, drawn by the tools and fonts
the held-out set (:mod:`benchmarks.heldout_pictures`) leaves out.

    python benchmarks/dev_pictures.py OUT_FOLDER [--seed 0] [--charts 40] [--documents 40]
    python benchmarks/reading_heldout.py --folder OUT_FOLDER     # scored the same way

The contents (titles, labels, values, fields, items, questions, lies) come from the held-out set's
own generators, so both sets ask the same kinds of question; what differs is who draws them:

- charts, tool ``matplotlib``: Matplotlib's bar and barh in its styles (default, ggplot, bmh,
  seaborn-v0_8, fivethirtyeight), DejaVu Sans (its own font), values printed by ``bar_label`` on half;
- documents, tool ``pil-dejavu``: the held-out PIL layout drawn in DejaVu Sans, Serif and Sans Mono,
  a third made to look scanned.

Needs matplotlib (``redgraph[render]``) and Debian's DejaVu fonts (``fonts-dejavu-core``).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import heldout_pictures as heldout  # noqa: E402

STYLES = ("default", "ggplot", "bmh", "seaborn-v0_8", "fivethirtyeight")
DEJAVU = {"DejaVu Sans": ("dejavu/DejaVuSans.ttf", "dejavu/DejaVuSans-Bold.ttf"),
          "DejaVu Serif": ("dejavu/DejaVuSerif.ttf", "dejavu/DejaVuSerif-Bold.ttf"),
          "DejaVu Sans Mono": ("dejavu/DejaVuSansMono.ttf", "dejavu/DejaVuSansMono-Bold.ttf")}


def draw_matplotlib(chart: heldout.Chart, rng: random.Random) -> tuple[bytes, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    style = rng.choice(STYLES)
    with plt.style.context(style):
        figure, axes = plt.subplots(figsize=(chart.width / 100, chart.height / 100), dpi=100)
        draw = axes.barh if chart.horizontal else axes.bar
        labels = list(reversed(chart.labels)) if chart.horizontal else chart.labels
        values = list(reversed(chart.values)) if chart.horizontal else chart.values
        colours = list(reversed(chart.colours)) if chart.horizontal else chart.colours
        bars = draw(labels, values, color=colours)
        if chart.show_values:
            printed = list(reversed(chart.printed)) if chart.horizontal else chart.printed
            axes.bar_label(bars, labels=printed, padding=2)
        axes.set_title(chart.title)
        figure.tight_layout()
        out = io.BytesIO()
        figure.savefig(out, format="png")
        plt.close(figure)
    return out.getvalue(), style


def draw_set(folder: Path, *, seed: int = 0, charts: int = 40, documents: int = 40) -> dict:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    heldout.SYSTEM_FONTS = DEJAVU  # the held-out PIL layout, in the development fonts
    heldout.DOCUMENT_FONTS = tuple(DEJAVU)
    entries = []
    slots = sorted([("chart", i) for i in range(charts)] + [("document", i) for i in range(documents)],
                   key=lambda s: (s[1], s[0]))
    for kind, index in slots:
        rng, draw_rng, ask_rng = (random.Random(f"redgraph-dev:{seed}:{kind}:{index}:{part}")
                                  for part in ("content", "draw", "ask"))
        scanned = False
        if kind == "chart":
            chart = heldout.random_chart(rng)
            data, font = draw_matplotlib(chart, draw_rng)
            tool, fmt, questions = "matplotlib", "png", heldout.chart_questions(chart, ask_rng)
        else:
            doc, facts = heldout.random_document(rng)
            questions = heldout.document_questions(doc, facts, ask_rng)
            image, font = heldout.draw_pil_document(doc, draw_rng)
            scanned = draw_rng.random() < 1 / 3
            tool, fmt = "pil-dejavu", "jpeg" if scanned else "png"
            if scanned:
                data = heldout.scan_look(image, draw_rng)
            else:
                out = io.BytesIO()
                image.save(out, format="PNG")
                data = out.getvalue()
        name = f"{kind}-{index:03d}-{tool}"
        file = f"{name}.{'jpg' if fmt == 'jpeg' else 'png'}"
        (folder / file).write_bytes(data)
        with Image.open(folder / file) as opened:
            size = list(opened.size)
        for number, question in enumerate(questions):
            question["id"] = f"{name}-q{number}"
        entries.append({"file": file, "tool": tool, "font": font, "kind": kind, "format": fmt, "scanned": scanned,
                        "size": size, "questions": questions})
    manifest = {"seed": seed, "tools": ["matplotlib", "pil-dejavu"], "match_rules": list(heldout.MATCH_RULES),
                "pictures": entries}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    return manifest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--charts", type=int, default=40)
    parser.add_argument("--documents", type=int, default=40)
    args = parser.parse_args()
    manifest = draw_set(args.folder, seed=args.seed, charts=args.charts, documents=args.documents)
    print(f"{len(manifest['pictures'])} pictures in {args.folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
