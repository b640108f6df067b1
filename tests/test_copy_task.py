"""The copy task: its generator gives verbatim spans, its splits are disjoint, and it builds an Example."""

from __future__ import annotations

import random

import pytest

from redgraph.errors import ConfigError
from redgraph.lab.copy_task import KINDS, copy_item
from redgraph.lab.train_config import TrainConfig, format_task_weights, parse_task_weights


def test_answers_are_verbatim_spans_and_items_reproduce():
    for split in ("train", "heldout"):
        for index in range(300):
            item = copy_item(split, index, seed=3)
            assert item == copy_item(split, index, seed=3)
            if item.kind == "count":
                assert f"There are {item.answer} bars." in item.rationale
            else:
                assert item.answer in item.rationale and item.answer.strip() == item.answer
    for kind in KINDS:
        assert copy_item("heldout", 7, kind=kind).kind == kind


def test_heldout_strings_are_never_drawn_in_training():
    def words(split):
        seen = set()
        for index in range(400):
            item = copy_item(split, index)
            if item.kind in ("title", "bar_label", "colour"):
                seen.update(w.lower() for w in item.answer.split() if w.isalpha())
        return seen

    assert not words("train") & words("heldout")
    heldout_amounts = [copy_item("heldout", i, kind="amount").answer for i in range(50)]
    assert all(not a.startswith(("$", "€")) for a in heldout_amounts)


def test_copy_is_drawn_only_when_named():
    assert parse_task_weights("verify=3") == (1.0, 1.0, 1.0, 1.0, 3.0)  # five: no copy
    weights = parse_task_weights("copy=4")
    assert weights == (1.0, 1.0, 1.0, 1.0, 1.0, 4.0)
    assert format_task_weights(weights).endswith(",copy=4")
    assert TrainConfig(task_weights=(1, 1, 1, 1, 1, 0)).task_weights == (1.0,) * 5
    assert not TrainConfig(task_weights=(1,) * 6).uniform_tasks
    with pytest.raises(ConfigError, match="copy_short_share must be a share"):
        TrainConfig(copy_short_share=2)


def test_copy_builds_a_text_only_example():
    from redgraph.data.synthetic import make_item
    from redgraph.lab.tasks import make_example
    from redgraph.models.embedded import EMBEDDED_DIR
    from redgraph.models.processors import load_processor

    processor = load_processor(str(EMBEDDED_DIR))
    example = make_example(make_item("train", 0), "copy", processor, random.Random(0))
    assert example.task == "copy" and example.image is None and example.target
    assert "Rationale:" in example.prompt and example.target in example.prompt
