"""Pictures from other drawing tools in training and evaluation: the looks, the held-out family,
degradation, the chart shards, the loss over pictures of any shape, evaluation by source."""

from __future__ import annotations

import dataclasses
import io
import json
import random
import tarfile

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from redgraph.cli import app
from redgraph.data import generate_items
from redgraph.data.synthetic import make_item, split_of
from redgraph.data.tools import (
    HELDOUT_FONTS,
    HELDOUT_STYLE,
    TRAIN_FONTS,
    TRAIN_STYLES,
    Layout,
    degrade,
    draw_laid_out,
    draw_with,
    picture_of,
    tool_items,
)
from redgraph.errors import ConfigError, InputError
from redgraph.lab.architecture import Dimensions, build_untrained
from redgraph.lab.batches import batch_tensors, step_examples
from redgraph.lab.evaluate import evaluate
from redgraph.lab.losses import VisionHeads, example_loss
from redgraph.lab.pictures import load_shards, render_shards, training_picture
from redgraph.lab.scene_labels import CELL_VOCABULARY, layout_cell_labels
from redgraph.lab.tasks import make_example
from redgraph.lab.train import train
from redgraph.lab.train_config import TrainConfig

SMALL = Dimensions(hidden=32, layers=1, heads=2, kv_heads=1, intermediate=64, vision_hidden=32,
                   vision_layers=1, vision_heads=2)


def test_the_held_out_family_is_never_drawn_by_another_look(monkeypatch):
    assert HELDOUT_STYLE not in TRAIN_STYLES and not set(HELDOUT_FONTS) & set(TRAIN_FONTS)
    import matplotlib.style

    used_styles, used_fonts = [], []
    real_context = matplotlib.style.context
    monkeypatch.setattr(matplotlib.style, "context", lambda name: used_styles.append(name) or real_context(name))
    import redgraph.data.tools as tools

    real_font = tools._font
    monkeypatch.setattr(tools, "_font", lambda name, size: used_fonts.append(name) or real_font(name, size))
    for look in ("default", "train"):
        for _ in tool_items("matplotlib", 6, split="train", look=look):
            pass
        for _ in tool_items("fonts", 12, split="train", look=look):
            pass
    assert used_styles and HELDOUT_STYLE not in used_styles and len(set(used_styles)) >= 3
    assert used_fonts and not set(used_fonts) & set(HELDOUT_FONTS)
    used_styles.clear(), used_fonts.clear()
    for _ in tool_items("matplotlib", 2, look="heldout"):
        pass
    for _ in tool_items("fonts", 4, look="heldout"):
        pass
    assert set(used_styles) == {HELDOUT_STYLE} and set(used_fonts) <= set(HELDOUT_FONTS)


def test_looks_are_seeded_by_the_question_and_differ_from_each_other():
    item = next(generate_items("test", 3, start=1))  # a bar chart
    assert item.kind == "bars"
    assert picture_of(item).tobytes() == picture_of(item).tobytes()
    assert picture_of(item).tobytes() != picture_of(item, look="heldout").tobytes()
    for look in ("default", "train", "heldout"):
        picture = draw_with("matplotlib", item.scene, random.Random(1), look=look)
        assert picture.mode == "RGB" and 96 <= min(picture.size) and max(picture.size) <= 256
    with pytest.raises(InputError, match="unknown look 'fancy'; choose one of default, train, heldout"):
        draw_with("matplotlib", item.scene, random.Random(0), look="fancy")
    shapes = next(generate_items("test", 1))
    with pytest.raises(InputError, match="no drawing tool draws shapes scenes"):
        picture_of(shapes)


def test_documents_in_every_layout_hold_their_text():
    """Every training layout of a document draws on a page that holds it all: ink reaches no edge."""
    items = [item for item, _ in zip(generate_items("train", 120), range(120)) if item.kind == "document"]
    for index, item in enumerate(items):
        picture = draw_with("fonts", item.scene, random.Random(index), look="train")
        paper = picture.getpixel((0, 0))
        width, height = picture.size
        edges = [picture.getpixel((x, y)) for x in (0, width - 1) for y in range(height)]
        edges += [picture.getpixel((x, y)) for y in (0, height - 1) for x in range(width)]
        assert all(pixel == paper for pixel in edges), (index, item.scene)


def test_degrade_keeps_the_picture_recognisable_and_varies():
    item = next(generate_items("test", 3, start=2))
    picture = item.image()
    outs = [degrade(picture, random.Random(seed)) for seed in range(6)]
    assert all(o.mode == "RGB" for o in outs)
    assert len({o.size for o in outs}) > 1 and all(o.tobytes() != picture.tobytes() for o in outs)
    assert all(0.6 < o.width / picture.width < 1.6 for o in outs)


def test_make_item_asks_about_a_given_scene_of_its_split():
    scene = next(i.scene for i in generate_items("train", 6) if i.kind == "bars")
    item = make_item("train", 7, scene=scene)
    assert item.scene == scene and item.kind == "bars" and item.category in ("tallest", "shortest", "bar_value",
                                                                              "bar_compare")
    test_scene = next(generate_items("test", 1)).scene
    assert split_of(test_scene) == "test"
    with pytest.raises(InputError, match="the scene given is of the test split, not train"):
        make_item("train", 0, scene=test_scene)


def test_a_run_without_tool_pictures_sees_the_examples_it_always_did():
    processor = build_untrained(SMALL)[1]
    plain = TrainConfig(steps=1, batch_size=12, dimensions=SMALL)
    explicit = dataclasses.replace(plain, tool_share=0.0, augment=0.0)
    a, b = step_examples(0, plain, processor), step_examples(0, explicit, processor)
    assert [(e.prompt, e.target, e.image.tobytes() if e.image else None) for e in a] == \
           [(e.prompt, e.target, e.image.tobytes() if e.image else None) for e in b]


def test_tool_pictures_replace_the_own_drawing_of_bars_and_documents_only():
    processor = build_untrained(SMALL)[1]
    config = TrainConfig(steps=1, batch_size=24, dimensions=SMALL, tool_share=1.0, task_weights=(1, 0, 0, 0, 0))
    examples = step_examples(0, config, processor)
    labelled = step_examples(0, dataclasses.replace(config, cell_weight=1.0, tool_cells=True), processor)
    items = [make_item("train", i) for i in range(24)]
    grids = batch_tensors(examples, processor)["image_grid_thw"].tolist()
    for example, with_cells, item, (_, rows, columns) in zip(examples, labelled, items, grids):
        assert example.image.tobytes() == with_cells.image.tobytes()
        if item.kind == "shapes":
            assert example.image.size == (128, 128) and len(example.cell_labels) == 64
        else:
            assert example.image.tobytes() != item.image().tobytes() and example.cell_labels == ()
            # with tool_cells, labelled from the drawing's layout, one set of facts per image token
            assert len(with_cells.cell_labels) == rows * columns // 4 and any(with_cells.cell_labels)
            assert example.scene_labels  # the scene's facts still hold for another tool's drawing
    assert step_examples(0, config, processor)[1].image.tobytes() == examples[1].image.tobytes()  # reproducible
    with pytest.raises(ConfigError, match="tool_share must be a share from 0 to 1, got 2"):
        TrainConfig(tool_share=2)
    with pytest.raises(ConfigError, match="tool_share and augment need data_stream 2"):
        TrainConfig(augment=0.5, data_stream=1)
    with pytest.raises(ConfigError, match="tool_cells .* needs a cell_weight and a tool_share above 0 .got 0 and 1"):
        TrainConfig(tool_share=1.0, tool_cells=True)
    with pytest.raises(ConfigError, match="cell_head_init must be one of random, zero, got 'ones'"):
        TrainConfig(cell_head_init="ones")


def test_chart_shards_round_trip_and_feed_training(tmp_path):
    description = render_shards(tmp_path / "charts", 5, seed=3, workers=1, shard_size=2)
    assert description["shards"] == ["charts-00000.tar", "charts-00001.tar", "charts-00002.tar"]
    with tarfile.open(tmp_path / "charts" / "charts-00000.tar") as tar:
        assert tar.getnames() == ["000000.png", "000000.json", "000001.png", "000001.json"]
    pictures = load_shards(str(tmp_path / "charts"))
    assert len(pictures) == 5 and all(split_of(scene) == "train" for scene, _, _ in pictures)
    for scene, png, layout in pictures:  # each picture's layout: its size and every bar, in the scene's order
        with Image.open(io.BytesIO(png)) as opened:
            assert layout.size == opened.size and [box[0] for box in layout.boxes] == [c for c, _ in scene.bars]
    config = TrainConfig(steps=1, batch_size=4, dimensions=SMALL, tool_share=1.0, chart_shards=str(tmp_path / "charts"))
    bars = next(i for i in generate_items("train", 3) if i.kind == "bars")
    item, picture, layout = training_picture(bars, "answer", 1, config, random.Random(0))
    assert item.scene in [scene for scene, _, _ in pictures] and picture is not None
    assert (item.scene, layout) in [(scene, shard_layout) for scene, _, shard_layout in pictures]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no chart shards .* `redgraph embedded render FOLDER --count N`"):
        load_shards(str(tmp_path / "empty"))
    _, manifest = train(None, config)
    assert manifest["command"].endswith(f"--tool-share 1 --chart-shards {tmp_path / 'charts'}")
    with pytest.raises(ConfigError, match="holds no chart shards"):  # refused before any training
        train(None, dataclasses.replace(config, chart_shards=str(tmp_path / "empty")),
              on_progress=lambda *_: pytest.fail("trained"))
    with pytest.raises(ConfigError, match=r"shows charts only to a run with a tool_share above 0"):
        TrainConfig(chart_shards=str(tmp_path / "charts"))


def test_the_loss_takes_pictures_of_any_shape_and_cells_only_where_labelled():
    model, processor = build_untrained(SMALL)
    items = [i for i in generate_items("train", 12) if i.kind != "shapes"][:4]
    rng = random.Random(0)
    pictures = [None, picture_of(items[1], look="train"), None, degrade(picture_of(items[3]), rng)]
    examples = [make_example(item, "answer", processor, rng, picture) for item, picture in zip(items, pictures)]
    batch = batch_tensors(examples, processor)
    assert batch["cell_mask"].sum(-1).tolist() == [64.0, 0.0, 64.0, 0.0]
    assert len(set(batch["image_grid_thw"].prod(-1).tolist())) > 1  # other shapes: other counts of tokens
    heads = VisionHeads(SMALL.hidden, aux_weight=1.0, cell_weight=1.0)
    loss = example_loss(model, batch, heads)
    assert torch.isfinite(loss)
    loss.backward()
    assert heads.cell.weight.grad.abs().sum() > 0 and heads.scene.weight.grad.abs().sum() > 0
    unlabelled = dict(batch, cell_mask=torch.zeros_like(batch["cell_mask"]))
    heads.zero_grad()
    example_loss(model, unlabelled, heads).backward()
    assert heads.cell.weight.grad is None or heads.cell.weight.grad.abs().sum() == 0


def test_evaluation_reports_each_picture_source_apart():
    lvlm, _ = train(None, TrainConfig(steps=1, batch_size=2, dimensions=SMALL))
    charts = evaluate(lvlm, limit=2, batch_size=2, source="matplotlib")
    assert charts["source"] == "matplotlib" and set(charts["per_kind"]) == {"bars"}
    heldout = evaluate(lvlm, limit=4, batch_size=4, source="heldout")
    assert set(heldout["per_kind"]) == {"bars", "document"} and heldout["ci95"]["overall"]
    assert set(evaluate(lvlm, limit=2, batch_size=2, source="fonts")["per_kind"]) == {"document"}
    with pytest.raises(ConfigError, match="unknown picture source 'photos'; choose one of synthetic, matplotlib"):
        evaluate(lvlm, limit=1, source="photos")
    result = CliRunner().invoke(app, ["embedded", "evaluate", "--limit", "1", "--source", "photos"])
    assert result.exit_code != 0 and "unknown picture source 'photos'" in result.output


def test_a_calibration_fitted_with_tools_takes_their_pictures_into_its_range():
    from redgraph.lab.calibrate import fit_calibration

    lvlm, _ = train(None, TrainConfig(steps=1, batch_size=2, dimensions=SMALL))
    own = fit_calibration(lvlm, items=3, bank_pictures=3, bank_size=64)
    both = fit_calibration(lvlm, items=3, bank_pictures=3, bank_size=10_000, tools=True)
    assert own.fitted["tools"] is False and both.fitted["tools"] is True
    # 3 own pictures of 64 tokens, and the bar chart and document of the three again in other tools' look
    assert both.bank.shape[0] > 3 * 64


def test_the_render_command_draws_shards_and_refuses_a_bad_count(tmp_path):
    import json

    done = CliRunner().invoke(app, ["embedded", "render", str(tmp_path / "c"), "--count", "2", "--workers", "1"])
    assert done.exit_code == 0, done.output
    assert json.loads((tmp_path / "c" / "shards.json").read_text())["pictures"] == 2
    assert len(load_shards(str(tmp_path / "c"))) == 2
    bad = CliRunner().invoke(app, ["embedded", "render", str(tmp_path / "d"), "--count", "0"])
    assert bad.exit_code != 0 and "count must be a whole number" in bad.output and "Traceback" not in bad.output


def _ink_near(picture, x: float, y: float, paper, reach: int) -> bool:
    """Whether some pixel within ``reach`` of ``(x, y)`` differs from ``paper``."""
    pixels = picture.load()
    return any(sum(abs(a - b) for a, b in zip(pixels[min(picture.width - 1, max(0, round(x) + dx)),
                                                     min(picture.height - 1, max(0, round(y) + dy))], paper)) > 60
               for dx in range(-reach, reach + 1) for dy in range(-reach, reach + 1))


def test_a_documents_layout_puts_each_character_on_its_ink_and_in_its_lines_cells():
    processor = build_untrained(SMALL)[1]
    names = {index: name for name, index in CELL_VOCABULARY.items()}
    documents = [i for i in generate_items("train", 120) if i.kind == "document"][:24]
    for index, item in enumerate(documents):
        rng = random.Random(index)
        picture, layout = draw_laid_out("fonts", item.scene, rng, look="train" if index % 4 else "default")
        assert picture.tobytes() == draw_with("fonts", item.scene, random.Random(index),
                                              look="train" if index % 4 else "default").tobytes()
        assert layout.size == picture.size and not layout.boxes
        paper = picture.getpixel((picture.width - 1, picture.height - 1))
        # a digit's centre is on its ink; a hollow letter's (O, C, U) only near it
        assert all(_ink_near(picture, x, y, paper, 2 if char in "123456789" else 6) for char, x, y, _ in layout.glyphs)
        cells = [{names[i] for i in facts} for facts in layout_cell_labels(layout, 16)]
        grid = processor.image_processor(images=[picture], return_tensors="pt")["image_grid_thw"][0].tolist()
        assert len(cells) == grid[1] * grid[2] // 4  # one set of facts per merged image token
        assert any(f"title:{item.scene.title}" in facts for facts in cells)
        for name, value in item.scene.fields:  # each digit of a field's value is in a cell of its line
            for digit in str(value):
                assert any(f"line:{name}" in facts and f"char:{digit}:{half}" in facts
                           for facts in cells for half in (0, 1)), (name, value, digit)


def test_a_layouts_cell_labels_follow_a_larger_pixel_budget():
    processor = build_untrained(SMALL, image_side=256)[1]
    names = {index: name for name, index in CELL_VOCABULARY.items()}
    document = next(i for i in generate_items("train", 12) if i.kind == "document")
    picture, layout = draw_laid_out("fonts", document.scene, random.Random(3), look="default")
    small, large = layout_cell_labels(layout, 16), layout_cell_labels(layout, 16, pixels=256 * 256)
    grid = processor.image_processor(images=[picture], return_tensors="pt")["image_grid_thw"][0].tolist()
    assert len(large) == grid[1] * grid[2] // 4 > 3 * len(small)  # one per token of the 256-pixel grid

    def digits(cells) -> list[str]:  # each labelled digit fact, in the grid's reading order
        return [names[f].split(":")[1] for facts in cells for f in facts
                if names[f].startswith("char:") and names[f].split(":")[1].isdigit()]
    # every digit of the values is labelled at both sides; at 256 two digits share a square less often
    written = sorted(d for _, value in document.scene.fields for d in str(value))
    assert sorted(set(digits(large))) == sorted(set(written)) == sorted(set(digits(small)))
    assert len(digits(large)) >= len(digits(small))


def test_a_charts_layout_boxes_each_bar_in_its_colour_and_marks_where_it_ends():
    from matplotlib.colors import to_rgb

    from redgraph.data.tools import _TAB

    names = {index: name for name, index in CELL_VOCABULARY.items()}
    charts = [i for i in generate_items("train", 80) if i.kind == "bars"][:10]
    for index, item in enumerate(charts):
        picture, layout = draw_laid_out("matplotlib", item.scene, random.Random(index), look="train")
        assert layout.size == picture.size and len(layout.boxes) == len(layout.ends) == len(item.scene.bars)
        for (colour, left, top, right, bottom), (value, x, y), (name, true_value) in zip(
                layout.boxes, layout.ends, item.scene.bars):
            assert colour == name and value == true_value
            assert left <= x <= right and top <= y <= bottom
            centre = picture.getpixel(((left + right) / 2, (top + bottom) / 2))

            def distance(other: str) -> float:  # to the nearer of its CSS and tab10 shades
                return min(sum(abs(c - 255 * t) for c, t in zip(centre, to_rgb(shade))) for shade in (other, _TAB[other]))
            assert min(_TAB, key=distance) == name  # the box's middle is of the bar's colour (some styles shade it)
        cells = [{names[i] for i in facts} for facts in layout_cell_labels(layout, 16)]
        for colour, value in item.scene.bars:
            assert any(f"colour:{colour}" in facts for facts in cells)
            assert any(f"bar_top:{value}" in facts for facts in cells)


def test_a_degraded_picture_has_no_cell_labels_and_old_shards_are_refused_by_a_cell_loss(tmp_path):
    processor = build_untrained(SMALL)[1]
    document = next(i for i in generate_items("train", 12) if i.kind == "document")
    config = TrainConfig(steps=1, batch_size=2, dimensions=SMALL, tool_share=1.0, augment=1.0)
    item, picture, layout = training_picture(document, "answer", 0, config, random.Random(0))
    assert picture is not None and layout is None
    assert make_example(item, "answer", processor, random.Random(0), picture, layout).cell_labels == ()
    render_shards(tmp_path / "old", 2, workers=1)
    with tarfile.open(tmp_path / "old" / "charts-00000.tar") as tar:  # as shards were drawn before layouts
        records = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(tmp_path / "old" / "charts-00000.tar", "w") as tar:
        for name, data in records:
            if name.endswith(".json"):
                record = json.loads(data)
                del record["layout"]
                data = json.dumps(record).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert [layout for _, _, layout in load_shards(str(tmp_path / "old"))] == [None, None]
    old = dataclasses.replace(config, augment=0.0, chart_shards=str(tmp_path / "old"), cell_weight=1.0, tool_cells=True)
    with pytest.raises(ConfigError, match="drawn without the layout the cell loss labels their pictures from"):
        train(None, old, on_progress=lambda *_: pytest.fail("trained"))
    train(None, dataclasses.replace(old, tool_cells=False))  # without tool_cells the old shards train as before
    assert Layout.from_dict(Layout((3, 4), boxes=(("red", 0.0, 1.0, 2.0, 3.0),)).to_dict()) == \
        Layout((3, 4), boxes=(("red", 0.0, 1.0, 2.0, 3.0),))
    with pytest.raises(InputError, match="not a drawing's layout"):
        Layout.from_dict({"glyphs": []})


def test_a_zero_cell_head_learns_before_it_sends_gradient_into_the_tower():
    from redgraph.lab.checkpoints import train_command
    from redgraph.lab.scene_labels import cell_labels

    scenes = [item.scene for item in generate_items("train", 3)]
    batch = {"cell_targets": torch.zeros(3, 64, len(CELL_VOCABULARY)), "cell_mask": torch.ones(3, 64)}
    for row, scene in enumerate(scenes):
        for index, facts in enumerate(cell_labels(scene, 16)):
            batch["cell_targets"][row, index, list(facts)] = 1.0
    for init, reaches_tower in (("random", True), ("zero", False)):
        tokens = torch.randn(3, 64, 32, requires_grad=True)
        heads = VisionHeads(32, 0.0, 1.0, cell_init=init)
        heads.loss(tokens, batch).backward()
        assert bool(tokens.grad.abs().sum() > 0) == reaches_tower
        assert heads.cell.weight.grad.abs().sum() > 0  # the head itself learns from the first step
    config = TrainConfig(cell_weight=1.0, tool_share=1.0, tool_cells=True, cell_head_init="zero")
    assert train_command(config).endswith("--tool-share 1 --tool-cells --cell-head-init zero")
