"""The synthetic generator: deterministic, labels right (re-derived here from the scene record by
code independent of the library's), splits disjoint, export readable."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from redgraph.data import CATEGORIES, Claim, export_dataset, generate_items, grade_rationale, parse_claim, read_items
from redgraph.data.posing import ALL_CATEGORIES, falsify, scene_facts
from redgraph.data.synthetic import make_item, split_of
from redgraph.errors import InputError

ITEMS = {split: list(generate_items(split, 150, seed=0)) for split in ("train", "test")}


def _objects(scene: dict) -> dict[tuple[str, str], dict]:
    return {(o["colour"], o["shape"]): o for o in scene.get("objects", [])}


def expected_answer(question: str, scene: dict) -> str:
    """The answer, worked out from the scene dict alone."""
    objs = scene.get("objects", [])
    bars = dict(map(tuple, scene.get("bars", [])))
    by_name = _objects(scene)
    if m := re.fullmatch(r"How many (\w+) shapes are there\?", question):
        return str(sum(o["colour"] == m[1] for o in objs))
    if m := re.fullmatch(r"How many (\w+)s are there\?", question):
        return str(sum(o["shape"] == m[1] for o in objs))
    if m := re.fullmatch(r"What colour is the (\w+)\?", question):
        (only,) = [o for o in objs if o["shape"] == m[1]]
        return only["colour"]
    if m := re.fullmatch(r"Is there a (\w+) (\w+)\?", question):
        return "yes" if (m[1], m[2]) in by_name else "no"
    if m := re.fullmatch(r"Is the (\w+) (\w+) (left or right of|above or below|bigger or smaller than) the (\w+) (\w+)\?", question):
        a, b = by_name[(m[1], m[2])], by_name[(m[4], m[5])]
        if m[3].startswith("left"):
            return "left" if a["x"] < b["x"] else "right"
        if m[3].startswith("above"):
            return "above" if a["y"] < b["y"] else "below"
        return "bigger" if (a["size"], b["size"]) == ("big", "small") else "smaller"
    if question == "Which bar is the tallest?":
        return max(bars, key=bars.get)
    if question == "Which bar is the shortest?":
        return min(bars, key=bars.get)
    if m := re.fullmatch(r"What is the value of the (\w+) bar\?", question):
        return str(bars[m[1]])
    if m := re.fullmatch(r"Which bar is higher, the (\w+) bar or the (\w+) bar\?", question):
        return m[1] if bars[m[1]] > bars[m[2]] else m[2]
    if question == "What is the title?":
        return scene["title"]
    if m := re.fullmatch(r"What is the (\w+)\?", question):
        return str(dict(map(tuple, scene["fields"]))[m[1]])
    raise AssertionError(f"unexpected question {question!r}")


def claim_truth(text: str, scene: dict) -> bool:
    """Whether a claim sentence holds, from the scene dict alone."""
    objs = scene.get("objects", [])
    bars = dict(map(tuple, scene.get("bars", [])))
    by_name = _objects(scene)
    if m := re.fullmatch(r"There (?:is|are) (\d+) (\w+) shapes?\.", text):
        return sum(o["colour"] == m[2] for o in objs) == int(m[1]) and scene["kind"] == "shapes"
    if m := re.fullmatch(r"There (?:is|are) (\d+) (\w+?)s?\.", text):
        return sum(o["shape"] == m[2] for o in objs) == int(m[1]) and scene["kind"] == "shapes"
    if m := re.fullmatch(r"There is (a|no) (\w+) (\w+)\.", text):
        return scene["kind"] == "shapes" and ((m[2], m[3]) in by_name) == (m[1] == "a")
    if m := re.fullmatch(r"The (\w+) (\w+) is (left of|right of|above|below|bigger than|smaller than) the (\w+) (\w+)\.", text):
        a, b = by_name.get((m[1], m[2])), by_name.get((m[4], m[5]))
        if a is None or b is None:
            return False
        size = {"big": 2, "small": 1}
        return {"left of": a["x"] < b["x"], "right of": a["x"] > b["x"], "above": a["y"] < b["y"],
                "below": a["y"] > b["y"], "bigger than": size[a["size"]] > size[b["size"]],
                "smaller than": size[a["size"]] < size[b["size"]]}[m[3]]
    if m := re.fullmatch(r"The (\w+) bar is (\d+)\.", text):
        return bars.get(m[1]) == int(m[2])
    if m := re.fullmatch(r"The (\w+) bar is the (tallest|shortest)\.", text):
        pick = max if m[2] == "tallest" else min
        return bool(bars) and pick(bars, key=bars.get) == m[1]
    if m := re.fullmatch(r"The (\w+) bar is (higher|lower) than the (\w+) bar\.", text):
        if m[1] not in bars or m[3] not in bars:
            return False
        return bars[m[1]] > bars[m[3]] if m[2] == "higher" else bars[m[1]] < bars[m[3]]
    if m := re.fullmatch(r"The title is (\w+)\.", text):
        return scene.get("title") == m[1]
    if m := re.fullmatch(r"The (\w+) is (\d+)\.", text):
        return dict(map(tuple, scene.get("fields", []))).get(m[1]) == int(m[2])
    if m := re.fullmatch(r"The (\w+) is (\w+)\.", text):
        matches = [o for o in objs if o["shape"] == m[1]]
        return len(matches) == 1 and matches[0]["colour"] == m[2]
    raise AssertionError(f"unexpected claim {text!r}")


def test_same_seed_same_items_and_pixels():
    again = list(generate_items("test", 150, seed=0))
    assert again == ITEMS["test"]
    assert [i.image().tobytes() for i in again[:6]] == [i.image().tobytes() for i in ITEMS["test"][:6]]
    other = list(generate_items("test", 20, seed=1))
    assert [i.scene for i in other] != [i.scene for i in ITEMS["test"][:20]]


@pytest.mark.parametrize("split", ["train", "test"])
def test_answers_rederived_from_the_scene(split):
    for item in ITEMS[split]:
        from redgraph.data.scenes import scene_to_dict

        assert item.answer == expected_answer(item.question, scene_to_dict(item.scene)), item


@pytest.mark.parametrize("split", ["train", "test"])
def test_claim_labels_rederived_from_the_scene(split):
    from redgraph.data.scenes import scene_to_dict

    labels = []
    for item in ITEMS[split]:
        scene = scene_to_dict(item.scene)
        for text, label in item.claims:
            assert label == claim_truth(text, scene), (text, scene)
            labels.append(label)
    assert 0.4 < sum(labels) / len(labels) < 0.6  # balanced enough to measure a critic


def test_rationales():
    from redgraph.data.scenes import scene_to_dict

    for item in ITEMS["test"]:
        scene = scene_to_dict(item.scene)
        assert grade_rationale(item.gold_rationale, item.scene).all_true
        assert all(claim_truth(s + ("" if s.endswith(".") else "."), scene) for s in item.gold_rationale.split(". ") if s)
        assert not grade_rationale(item.misleading_rationale, item.scene).all_true
        assert item.misleading_answer != item.answer
        # The misleading rationale, read alone, implies its own answer.
        assert item.misleading_answer in item.misleading_rationale or item.kind == "shapes"
        irrelevant = [parse_claim(s) for s in item.irrelevant_rationale.split(". ")]
        assert all(c is not None for c in irrelevant)


def test_every_category_and_kind_occurs():
    seen = {(i.kind, i.category) for split in ITEMS.values() for i in split}
    assert seen == {(kind, category) for kind, cats in CATEGORIES.items() for category in cats}


def test_splits_are_disjoint_by_scene():
    for split, items in ITEMS.items():
        assert all(split_of(i.scene) == split for i in items)
    train_scenes = {i.scene for i in ITEMS["train"]}
    assert not train_scenes & {i.scene for i in ITEMS["test"]}


def test_claims_round_trip_through_text():
    for item in ITEMS["train"][:60]:
        for fact in scene_facts(item.scene):
            assert parse_claim(fact.text) == fact
            assert fact.holds(item.scene)
            assert not falsify(fact, __import__("random").Random(0)).holds(item.scene)
    assert parse_claim("The cat sat on the mat.") is None
    assert parse_claim("the RED bar is 7") == Claim("bar_value", ("red", 7))


def test_export_is_gqa_style_and_reads_back(tmp_path):
    written = export_dataset(tmp_path, {"train": 4, "test": 3}, seed=0)
    records = [json.loads(line) for line in written["test"].read_text().splitlines()]
    assert [r["question_id"] for r in records] == [i.question_id for i in ITEMS["test"][:3]]
    for record in records:
        assert {"question_id", "image", "text", "answer", "category"} <= set(record)
        with Image.open(tmp_path / record["image"]) as image:
            assert image.size == (128, 128)
    assert read_items(written["test"]) == ITEMS["test"][:3]


def test_bad_input_is_named():
    with pytest.raises(InputError, match="'dev'"):
        next(generate_items("dev", 1))
    with pytest.raises(InputError, match="-1"):
        next(generate_items("test", -1))
    with pytest.raises(InputError, match="unknown split"):
        export_dataset("/tmp/never", {"dev": 1})
    with pytest.raises(InputError, match="question_id"):
        from redgraph.data import SyntheticItem

        SyntheticItem.from_record({"text": "q"})


def test_category_weights_set_the_mix_within_each_kind_and_can_leave_kinds_out():
    from collections import Counter

    uniform = {category: 1 for category in ALL_CATEGORIES}
    assert make_item("train", 5, category_weights=uniform) != make_item("train", 5)  # drawn by weight, not shuffled
    assert make_item("train", 5, category_weights=None) == next(generate_items("train", 1, start=5))
    only = dict.fromkeys(ALL_CATEGORIES, 0) | {"relation_lr": 1, "title": 1}
    drawn = Counter(make_item("train", i, category_weights=only).category for i in range(40))
    assert drawn == {"relation_lr": 20, "title": 20}  # bars weigh 0: shapes and documents alternate
    heavy = Counter(make_item("train", i, category_weights={"field": 4}).category for i in range(300))
    assert heavy["field"] > 2 * heavy["title"] and set(heavy) == set(ALL_CATEGORIES)
    for bad, message in (({"colour": 1}, "unknown question categories 'colour'"),
                         ({"field": -1}, "the weight of category field must be a number of at least 0, got -1"),
                         ({"field": True}, "got True"),
                         (dict.fromkeys(ALL_CATEGORIES, 0), "category weights are all 0")):
        with pytest.raises(InputError, match=message):
            make_item("train", 0, category_weights=bad)


def test_items_of_one_kind_are_generate_items_of_that_kind_in_order():
    from redgraph.data import generate_items
    from redgraph.data.synthetic import items_of_kind
    from redgraph.errors import InputError

    expected = [i.question_id for i in generate_items("test", 30) if i.kind == "bars"][:7]
    assert [i.question_id for i in items_of_kind("test", "bars", 7)] == expected
    with pytest.raises(InputError, match="'charts'"):
        next(items_of_kind("test", "charts", 1))
