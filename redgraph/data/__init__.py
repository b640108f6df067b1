"""Synthetic visual-reasoning data: scenes, labelled claims, items with rationales, GQA-style export."""

from redgraph.data.claims import Claim, check_rationale, parse_claim, split_sentences
from redgraph.data.scenes import KINDS, render
from redgraph.data.synthetic import (
    CATEGORIES,
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
    "check_rationale",
    "export_dataset",
    "generate_items",
    "make_item",
    "parse_claim",
    "read_items",
    "render",
    "split_sentences",
]
