"""Synthetic visual-reasoning data: scenes, labelled claims, items with rationales, GQA-style export."""

from redgraph.data.claims import Claim, grade_rationale, parse_claim, split_sentences
from redgraph.data.posing import CATEGORIES
from redgraph.data.scenes import KINDS, draw_scene
from redgraph.data.synthetic import (
    SPLITS,
    SyntheticItem,
    export_dataset,
    generate_items,
    make_item,
    read_items,
)

__all__ = [
    "CATEGORIES",
    "KINDS",
    "SPLITS",
    "Claim",
    "SyntheticItem",
    "grade_rationale",
    "export_dataset",
    "generate_items",
    "make_item",
    "parse_claim",
    "read_items",
    "draw_scene",
    "split_sentences",
]
