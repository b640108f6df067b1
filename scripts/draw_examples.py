"""Draw the demo's two pictures by other tools: a bar chart by matplotlib (its default style) and a
document in a DejaVu font, each a held-out test item, as ``redgraph/examples/chart-matplotlib.png``
and ``document-fonts.png``, and write their entries into ``examples.json`` (replacing earlier ones).

    .venv/bin/python scripts/draw_examples.py

The pictures are ``redgraph.data.tools``' default look, the look ``redgraph embedded evaluate
--source matplotlib|fonts`` measures; training draws that look's scenes never (test split) and the
look's details only by chance among its randomised ``train`` look.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# (file, tool, question category) of each picture; the first test item of that tool's kind and category.
PICTURES = (("chart-matplotlib.png", "matplotlib", "bar_value"), ("document-fonts.png", "fonts", "field"))


def main() -> None:
    from redgraph.data.tools import tool_items

    folder = ROOT / "redgraph" / "examples"
    entries = [e for e in json.loads((folder / "examples.json").read_text()) if e["image"] not in
               {name for name, _, _ in PICTURES}]
    for name, tool, category in PICTURES:
        item, picture = next((i, p) for i, p in tool_items(tool, 100) if i.category == category)
        picture.save(folder / name)
        entries.append({"image": name, "question": item.question, "answer": item.answer,
                        "misleading_rationale": item.misleading_rationale, "source": item.question_id,
                        "drawn_by": f"{tool} (redgraph.data.tools, default look)"})
    (folder / "examples.json").write_text(json.dumps(entries, indent=2) + "\n")
    print("\n".join(f"{e['image']}: {e['question']} -> {e['answer']}" for e in entries))


if __name__ == "__main__":
    main()
