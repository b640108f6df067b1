"""One question SDRT writes traces for (:class:`TraceItem`), and the picture its reference names
(:func:`item_image`): a synthetic item, a dataset's image, or a page of a user's document."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TraceItem:
    """One question to write traces for, and where its image comes from."""

    question_id: str
    question: str
    gold_answer: str | None
    kind: str
    ref: dict  # {"synthetic": split, "index": i, "seed": s} or {"image": path or None}

    def image(self):
        return item_image(self.ref)


def item_image(ref: dict):
    """The image a trace record's ``item`` reference names."""
    if "synthetic" in ref:
        from redgraph.data.synthetic import make_item

        return make_item(ref["synthetic"], int(ref["index"]), seed=int(ref["seed"])).image()
    if ref.get("page") is not None:  # a page of a user's document (a pictures: source)
        from redgraph.models.documents import page_image

        return page_image(Path(ref["image"]).read_bytes(), int(ref["page"]), what=f"document {ref['image']!r}")
    if ref.get("image") is None:
        from PIL import Image

        return Image.new("RGB", (224, 224), "white")  # a text-only multiple-choice question, as eval answers it
    from redgraph.models.images import load_image

    return load_image(ref["image"])
