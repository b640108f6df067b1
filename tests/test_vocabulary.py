"""The wide vocabulary: its words and numbers, wide scenes through the generator, the claim grammar,
the own renderer and matplotlib, and the standard items left exactly as they were."""

from __future__ import annotations

import hashlib
import json
import random

import pytest
import torch
from typer.testing import CliRunner

from redgraph.cli import app
from redgraph.data import generate_items, read_items
from redgraph.data.claims import grade_rationale, parse_claim
from redgraph.data.scenes import BarScene, DocumentScene, bar_boxes, draw_scene, scene_from_dict, vocabulary_of
from redgraph.data.synthetic import split_of
from redgraph.data.tools import draw_laid_out, draw_with
from redgraph.data.vocabulary import (
    RGB,
    STANDARD,
    UNSEEN_FIELDS,
    UNSEEN_TITLES,
    WIDE,
    form_of,
    unseen_value,
    vocabulary_named,
)
from redgraph.errors import InputError

WIDE_ITEMS = list(generate_items("train", 240, vocabulary=WIDE))


def test_the_standard_items_and_labels_are_the_ones_the_shipped_model_was_trained_and_measured_on():
    # the digest of the first 60 test items' records as the generator gave them before the wide
    # vocabulary (commit 4b77996): splits, questions, rationales and claims unchanged
    digest = hashlib.sha256()
    for item in generate_items("test", 60):
        digest.update(json.dumps(item.to_record("x"), sort_keys=True).encode())
    assert digest.hexdigest() == "69509dece438705e4661ff228d7f1f67c9fb9ccbc88d1dea909221577051a20c"
    assert all(vocabulary_of(item.scene) is STANDARD for item in generate_items("test", 60))
    # and the scene and cell heads' facts and the scene labels of the first 90 train items, as before
    # the heads took a vocabulary (commit c7f7749)
    from redgraph.lab.scene_labels import CELL_VOCABULARY, VOCABULARY, scene_labels

    digest = hashlib.sha256(json.dumps([VOCABULARY, CELL_VOCABULARY]).encode())
    for item in generate_items("train", 90):
        digest.update(json.dumps(scene_labels(item.scene)).encode())
    assert digest.hexdigest() == "561e9d4a1d135e15b3d1502f3e97b560de23a6e3f8058963f476da397a952761"


def test_the_wide_vocabulary_holds_what_the_issue_asks_and_the_unseen_words_are_in_neither():
    assert set(WIDE.colours) >= set(STANDARD.colours) | {"orange", "pink", "brown", "grey", "black", "cyan"}
    assert len(set(WIDE.titles)) == len(WIDE.titles) >= 50 and len(set(WIDE.fields)) == len(WIDE.fields) >= 50
    assert set(STANDARD.titles) <= set(WIDE.titles) and set(STANDARD.fields) <= set(WIDE.fields)
    assert len(UNSEEN_TITLES) == 50 and not set(UNSEEN_TITLES) & (set(WIDE.titles) | set(WIDE.fields))
    assert not set(UNSEEN_FIELDS) & (set(WIDE.titles) | set(WIDE.fields))
    assert max(WIDE.bar_values) == 100 and all(word.isalpha() for word in WIDE.titles + WIDE.fields + UNSEEN_TITLES)
    rng = random.Random(0)
    written = [WIDE.field_value(rng) for _ in range(4000)]
    assert max(int(v.replace(",", "")) for v in written if isinstance(v, str) and form_of(v) == "thousands") < 10_000
    for _ in range(200):  # an unseen value: five digits with a separator, or a form no grammar knows
        value = unseen_value(rng)
        if "," in value:
            assert form_of(value) == "thousands" and int(value.replace(",", "")) >= 10_000
        else:
            with pytest.raises(InputError, match="no known form"):
                form_of(value)
    with pytest.raises(InputError, match="unknown vocabulary 'huge'; choose one of standard, wide"):
        vocabulary_named("huge")


def test_the_own_renderer_paints_the_wide_colours_as_matplotlib_names_them():
    from matplotlib.colors import to_rgb

    for name in set(WIDE.colours) - set(STANDARD.colours):
        assert RGB[name] == tuple(round(255 * c) for c in to_rgb(name)), name


def test_wide_items_ask_in_the_wide_words_and_their_rationales_hold_or_fail_as_labelled():
    scenes = [item.scene for item in WIDE_ITEMS]
    assert all(item.question_id.startswith("train-0-wide-") and split_of(item.scene) == "train" for item in WIDE_ITEMS)
    assert {vocabulary_of(scene) for scene in scenes} == {STANDARD, WIDE}
    colours = {c for s in scenes if isinstance(s, BarScene) for c, _ in s.bars}
    assert colours - set(STANDARD.colours)  # the new colours are drawn
    assert max(v for s in scenes if isinstance(s, BarScene) for _, v in s.bars) > 50
    values = [v for s in scenes if isinstance(s, DocumentScene) for _, v in s.fields]
    assert {form_of(v) for v in values} == {"whole", "decimal", "thousands", "currency"}
    for item in WIDE_ITEMS:
        assert grade_rationale(item.gold_rationale, item.scene).all_true, item
        assert False in grade_rationale(item.misleading_rationale, item.scene).verdicts, item
        for text, label in item.claims:  # every claim parses in its scene's grammar and is labelled by the scene
            claim = parse_claim(text, vocabulary_of(item.scene))
            assert claim is not None and claim.text == text and claim.holds(item.scene) == label, text
        if item.category == "field":
            assert item.answer in {str(v) for _, v in item.scene.fields}
        assert item.misleading_answer != item.answer


def test_the_claim_grammar_reads_written_values_only_in_the_wide_vocabulary():
    assert parse_claim("The total is $3.99.", WIDE).args == ("total", "$3.99")
    assert parse_claim("The amount is 1,204.", WIDE).args == ("amount", "1,204")
    assert parse_claim("The tip is 12.50.", WIDE).args == ("tip", "12.50")
    assert parse_claim("The orange bar is 45.", WIDE).args == ("orange", 45)
    assert parse_claim("The total is 42.", WIDE).args == parse_claim("The total is 42.").args == ("total", 42)
    for sentence in ("The total is $3.99.", "The amount is 12.", "The orange bar is 4.", "The title is renewal."):
        assert parse_claim(sentence) is None, sentence  # the standard grammar, the critic's default, is as it was
    scene = DocumentScene(layout="receipt", title="renewal", fields=(("amount", "1,204"), ("tax", 12)))
    assert grade_rationale("The title is renewal. The amount is 1,204. The tax is 13.", scene).verdicts == (
        True, True, False)


def test_wide_scenes_round_trip_through_records_and_an_export(tmp_path):
    for item in WIDE_ITEMS[:30]:
        assert scene_from_dict(json.loads(json.dumps(item.to_record("x")["scene"]))) == item.scene
    with pytest.raises(InputError, match="not a valid scene record"):
        scene_from_dict({"kind": "document", "layout": "receipt", "title": "memo", "fields": [["tax", 1.5]],
                         "dx": 0, "dy": 0})
    result = CliRunner().invoke(app, ["data", "export", str(tmp_path / "wide"), "--train", "0", "--validation", "0",
                                      "--test", "9", "--vocabulary", "wide"])
    assert result.exit_code == 0, result.output
    read = read_items(tmp_path / "wide" / "test.jsonl")
    assert read == list(generate_items("test", 9, vocabulary=WIDE))
    assert json.loads((tmp_path / "wide" / "dataset.json").read_text())["vocabulary"] == "wide"
    refused = CliRunner().invoke(app, ["data", "export", str(tmp_path / "no"), "--vocabulary", "huge"])
    assert refused.exit_code == 2 and "unknown vocabulary 'huge'" in refused.output
    assert not (tmp_path / "no").exists()


def test_the_own_renderer_draws_wide_bars_against_a_labelled_axis_in_proportion():
    charts = [item.scene for item in WIDE_ITEMS if isinstance(item.scene, BarScene)]
    assert any(max(v for _, v in s.bars) > 9 for s in charts)
    for scene in charts[:20]:
        picture = draw_scene(scene)
        boxes = bar_boxes(scene)
        for (left, top, right, bottom), (colour, value) in zip(boxes, scene.bars):
            if bottom - top >= 2:
                assert picture.getpixel(((left + right) // 2, (top + bottom) // 2)) == RGB[colour]
        base = boxes[0][3] + 1
        heights = [(base - top) / value for (_, top, _, _), (_, value) in zip(boxes, scene.bars)]
        assert max(heights) - min(heights) < 1.5 / min(v for _, v in scene.bars) + 0.05  # one scale for every bar
        if max(v for _, v in scene.bars) > 9:  # tick labels left of the axis
            assert any(picture.getpixel((x, y))[0] < 100 for x in range(2, 20) for y in range(4, 120))


def test_matplotlib_draws_wide_charts_in_the_named_colours_with_their_ends_in_order():
    charts = [item for item in WIDE_ITEMS if isinstance(item.scene, BarScene)][:8]
    for index, item in enumerate(charts):
        picture, layout = draw_laid_out("matplotlib", item.scene, random.Random(index), look="default")
        assert [colour for colour, *_ in layout.boxes] == [colour for colour, _ in item.scene.bars]
        tops = [y for _, _, y in layout.ends]
        values = [value for value, _, _ in layout.ends]
        assert sorted(range(len(values)), key=lambda i: -values[i]) == sorted(range(len(tops)), key=lambda i: tops[i])
    documents = [item for item in WIDE_ITEMS if isinstance(item.scene, DocumentScene)][:8]
    for index, item in enumerate(documents):
        _, layout = draw_laid_out("fonts", item.scene, random.Random(index), look="train")
        written = "".join(char for char, *_ in layout.glyphs)
        for _, value in item.scene.fields:
            assert str(value).replace(" ", "") in written
    assert draw_with("fonts", documents[0].scene, random.Random(0)).size[0] >= 128


def test_a_run_on_the_wide_vocabulary_labels_its_facts_and_is_evaluated_in_it(tmp_path):
    import dataclasses

    from redgraph.errors import ConfigError
    from redgraph.lab.architecture import Dimensions, build_untrained
    from redgraph.lab.batches import batch_tensors, step_examples
    from redgraph.lab.evaluate import evaluate
    from redgraph.lab.losses import VisionHeads, example_loss
    from redgraph.lab.pictures import load_shards, render_shards
    from redgraph.lab.scene_labels import CELL_VOCABULARY, VOCABULARY, cell_fact_names, scene_fact_names
    from redgraph.lab.train import train
    from redgraph.lab.train_config import TrainConfig

    small = Dimensions(hidden=32, layers=1, heads=2, kv_heads=1, intermediate=64, vision_hidden=32, vision_layers=1,
                       vision_heads=2)
    wide_facts, wide_cells = scene_fact_names(WIDE), cell_fact_names(WIDE)
    assert list(wide_facts)[:5] == list(VOCABULARY)[:5] and len(wide_facts) > len(VOCABULARY)
    assert {"bar:orange:100", "title:warranty", "field:amount:units9"} <= set(wide_facts)
    assert {"bar_top:100", "char:$:0", "char:,:1", "line:amount"} <= set(wide_cells) and "char:$:0" not in CELL_VOCABULARY
    config = TrainConfig(steps=1, batch_size=6, dimensions=small, aux_weight=1.0, cell_weight=1.0, tool_share=0.5,
                         tool_cells=True, cell_head_init="zero", vocabulary="wide")
    model, processor = build_untrained(small)
    examples = step_examples(0, config, processor)
    names = {index: name for name, index in wide_facts.items()}
    for example in (e for e in examples if e.image is not None):
        assert example.scene_labels and max(example.scene_labels) < len(wide_facts)
    documents = [e for e in examples if e.image is not None and any(names[f].startswith("title:") for f in e.scene_labels)]
    cells = {index: name for name, index in wide_cells.items()}
    for example in documents:  # a document's title is one of the wide titles, and its cells name its characters
        title = next(names[f] for f in example.scene_labels if names[f].startswith("title:"))
        assert title.removeprefix("title:") in WIDE.titles
        if example.cell_labels:
            assert any(cells[f].startswith("char:") for facts in example.cell_labels for f in facts)
    batch = batch_tensors(examples, processor, vocabulary=WIDE)
    assert batch["scene_targets"].shape[-1] == len(wide_facts) and batch["cell_targets"].shape[-1] == len(wide_cells)
    heads = VisionHeads(small.hidden, 1.0, 1.0, vocabulary=WIDE)
    assert torch.isfinite(example_loss(model, batch, heads))
    lvlm, manifest = train(tmp_path / "run", config)
    assert manifest["command"].endswith("--vocabulary wide") and manifest["config"]["vocabulary"] == "wide"
    summary = evaluate(lvlm, limit=3, vocabulary="wide")
    assert summary["vocabulary"] == "wide" and summary["items"] == 3
    # the critic of a model trained on the wide vocabulary checks claims in its words, from its manifest
    from redgraph.agents.critic import LocalCritic
    from redgraph.agents.decompose import GrammarDecomposer, model_vocabulary
    from redgraph.models import load_lvlm

    saved = load_lvlm(str(tmp_path / "run"))
    assert model_vocabulary(saved) is WIDE and model_vocabulary(lvlm) is STANDARD  # in memory: no manifest
    [decomposer] = LocalCritic(saved).decomposers
    [probes] = decomposer.decompose(["The orange bar is 45."])
    assert probes[0].claimed == "45" and len(probes[0].alternatives) == 100
    assert GrammarDecomposer().decompose(["The orange bar is 45."]) == [None]
    manifest_file = tmp_path / "run" / "redgraph_manifest.json"
    manifest_file.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="redgraph_manifest.json cannot be read"):
        model_vocabulary(saved)
    manifest_file.write_text(json.dumps({"config": {"vocabulary": "klingon"}}), encoding="utf-8")
    with pytest.raises(ConfigError, match="names the vocabulary 'klingon'"):
        model_vocabulary(saved)
    render_shards(tmp_path / "standard-charts", 2, workers=1)
    with pytest.raises(ConfigError, match="drawn in the standard vocabulary and this run trains on the wide one"):
        train(None, dataclasses.replace(config, chart_shards=str(tmp_path / "standard-charts")),
              on_progress=lambda *_: pytest.fail("trained"))
    render_shards(tmp_path / "wide-charts", 3, workers=1, vocabulary=WIDE)
    assert any(max(v for _, v in scene.bars) > 9 for scene, _, _ in load_shards(str(tmp_path / "wide-charts")))
    with pytest.raises(ConfigError, match="vocabulary must be one of standard, wide, got 'huge'"):
        TrainConfig(vocabulary="huge")
    with pytest.raises(ConfigError, match="unknown vocabulary 'huge'"):
        evaluate(lvlm, limit=1, vocabulary="huge")


def test_the_commands_refuse_an_unknown_vocabulary_by_name(tmp_path):
    for command in (["embedded", "render", str(tmp_path / "charts"), "--count", "1", "--vocabulary", "huge"],
                    ["embedded", "train", str(tmp_path / "run"), "--steps", "1", "--vocabulary", "huge"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2 and "huge" in result.output and "standard, wide" in result.output, result.output
    assert not (tmp_path / "charts").exists() and not (tmp_path / "run").exists()
    # evaluate names the vocabulary before it loads a model (this one does not exist)
    result = CliRunner().invoke(app, ["embedded", "evaluate", "--model", str(tmp_path / "none"), "--vocabulary", "huge"])
    assert result.exit_code == 2 and "huge" in result.output and "none" not in result.output, result.output


def test_a_wide_run_keeps_a_share_of_standard_items_labelled_in_its_own_facts():
    from redgraph.errors import ConfigError
    from redgraph.lab.architecture import Dimensions, build_untrained
    from redgraph.lab.batches import item_vocabulary, step_examples
    from redgraph.lab.checkpoints import train_command
    from redgraph.lab.scene_labels import scene_fact_names
    from redgraph.lab.train_config import TrainConfig

    mixed = TrainConfig(steps=1, batch_size=40, vocabulary="wide", standard_share=0.5)
    drawn = [item_vocabulary(mixed, index) for index in range(400)]
    assert 0.4 < drawn.count(STANDARD) / 400 < 0.6 and set(drawn) == {STANDARD, WIDE}
    assert drawn == [item_vocabulary(mixed, index) for index in range(400)]  # by index: the same every time
    assert {item_vocabulary(TrainConfig(vocabulary="wide", standard_share=1.0), i) for i in range(50)} == {STANDARD}
    assert train_command(mixed).endswith("--vocabulary wide --standard-share 0.5")
    small = Dimensions(hidden=32, layers=1, heads=2, kv_heads=1, intermediate=64, vision_hidden=32, vision_layers=1,
                       vision_heads=2)
    processor = build_untrained(small)[1]
    examples = step_examples(0, TrainConfig(steps=1, batch_size=8, dimensions=small, aux_weight=1.0, vocabulary="wide",
                                            standard_share=1.0), processor)
    standard = step_examples(0, TrainConfig(steps=1, batch_size=8, dimensions=small, aux_weight=1.0), processor)
    assert [e.target for e in examples] == [e.target for e in standard]  # the standard run's own items
    names = {index: name for name, index in scene_fact_names(WIDE).items()}
    relabelled = [[names[f] for f in e.scene_labels] for e in examples]
    assert relabelled == [[{i: n for n, i in scene_fact_names(STANDARD).items()}[f] for f in e.scene_labels]
                          for e in standard]  # the same facts, numbered in the wide heads' names
    with pytest.raises(ConfigError, match=r"standard_share \(0.5\) mixes standard items into a run on another"):
        TrainConfig(standard_share=0.5)
    with pytest.raises(ConfigError, match="standard_share must be a share from 0 to 1, got 2"):
        TrainConfig(vocabulary="wide", standard_share=2)
