"""The embedded model: training runs, reduces the loss and reproduces from a seed; the shipped
checkpoint loads offline and answers; damaged files are named."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import random
import shutil
from collections import Counter

import numpy
import pytest
import torch
from typer.testing import CliRunner

from redgraph.cli import app
from redgraph.data import generate_items
from redgraph.errors import ConfigError, ModelLoadError
from redgraph.lab.architecture import GRID, Dimensions, build_untrained, mrope_section
from redgraph.lab.batches import batch_tensors
from redgraph.lab.checkpoints import auto_rope_layout
from redgraph.lab.evaluate import METRICS, evaluate
from redgraph.lab.losses import TARGETS, VisionHeads, example_loss
from redgraph.lab.tasks import TASKS, make_example
from redgraph.lab.train import sample_batch, train
from redgraph.lab.train_config import TrainConfig, format_task_weights, parse_task_weights
from redgraph.models.embedded import EMBEDDED_DIR, load_embedded
from redgraph.decoding.generate import generate_text
from redgraph.models.prompts import image_branch_text, rationale_branch_text

SMALL = Dimensions(hidden=32, layers=1, heads=2, kv_heads=1, intermediate=64, vision_hidden=32,
                   vision_layers=1, vision_heads=2)


def _held_out_loss(lvlm) -> float:
    rng = random.Random(0)
    examples = [make_example(item, TASKS[i % len(TASKS)], lvlm.processor, rng)
                for i, item in enumerate(generate_items("validation", 20))]
    with torch.no_grad():
        return float(example_loss(lvlm.model, batch_tensors(examples, lvlm.processor)))


def test_training_reduces_held_out_loss():
    untrained, _ = train(None, TrainConfig(steps=1, learning_rate=1e-9, warmup_steps=1, dimensions=SMALL))
    trained, manifest = train(None, TrainConfig(steps=25, batch_size=8, warmup_steps=5, learning_rate=3e-3,
                                                dimensions=SMALL))
    assert _held_out_loss(trained) < _held_out_loss(untrained) - 1.0
    assert manifest["steps_done"] == 25 and manifest["final_loss_mean_last_50"] < manifest["first_loss"]


def test_training_reproduces_from_its_seed():
    config = TrainConfig(steps=2, batch_size=4, dimensions=SMALL)
    first, _ = train(None, config)
    again, _ = train(None, config)
    other, _ = train(None, TrainConfig(steps=2, batch_size=4, dimensions=SMALL, seed=1))
    a, b, c = (m.model.state_dict() for m in (first, again, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_scene_labels_name_what_is_drawn():
    from redgraph.data.scenes import BarScene, DocumentScene, Shape, ShapeScene
    from redgraph.lab.scene_labels import VOCABULARY, scene_labels

    names = {index: name for name, index in VOCABULARY.items()}
    shapes = ShapeScene(objects=(Shape("red", "circle", 10, 120, "big"), Shape("blue", "square", 64, 20, "small")))
    assert {names[i] for i in scene_labels(shapes)} == {
        "kind:shapes", "shape:red:circle", "shape:red:circle:x0", "shape:red:circle:y2",
        "shape:blue:square", "shape:blue:square:x1", "shape:blue:square:y0"}
    bars = BarScene(bars=(("green", 3), ("purple", 9)))
    assert {names[i] for i in scene_labels(bars)} == {"kind:bars", "bar:green:3", "bar:purple:9"}
    document = DocumentScene(layout="receipt", title="menu", fields=(("tax", 47),))
    assert {names[i] for i in scene_labels(document)} == {"kind:document", "title:menu", "field:tax",
                                                          "field:tax:tens4", "field:tax:units7"}


def test_cell_labels_are_where_the_picture_shows_them():
    from redgraph.data.scenes import BarScene, DocumentScene, Shape, ShapeScene, draw_scene
    from redgraph.lab.architecture import CELL
    from redgraph.lab.scene_labels import CELL_VOCABULARY, cell_labels

    names = {index: name for name, index in CELL_VOCABULARY.items()}
    side = 128 // CELL

    def named(scene):
        return [{names[i] for i in cell} for cell in cell_labels(scene, CELL)]

    document = DocumentScene(layout="slide", title="menu", fields=(("tax", 47), ("room", 12)), dx=3, dy=2)
    cells = named(document)
    assert len(cells) == side * side
    # the digits of each field sit in that field's line, in reading order
    def digits(line):
        found = [(index, name.split(":")[2], name.split(":")[1]) for index, cell in enumerate(cells) if line in cell
                 for name in cell if name.startswith("char:") and name.split(":")[1].isdigit()]
        return [digit for *_, digit in sorted(found)]

    assert digits("line:tax") == ["4", "7"] and digits("line:room") == ["1", "2"]
    assert any("title:menu" in cell and {"char:m:0", "char:m:1"} & cell for cell in cells)
    # every cell that holds a character or a colour has ink in it; a blank cell holds nothing
    for scene in (document, DocumentScene(layout="receipt", title="order", fields=(("total", 90),)),
                  ShapeScene(objects=(Shape("red", "circle", 20, 100, "big"), Shape("blue", "square", 90, 30, "small"))),
                  BarScene(bars=(("green", 3), ("purple", 9), ("red", 1)))):
        pixels = torch.from_numpy(numpy.asarray(draw_scene(scene).convert("L")).copy())
        for index, cell in enumerate(named(scene)):
            row, column = divmod(index, side)
            ink = (pixels[row * CELL:(row + 1) * CELL, column * CELL:(column + 1) * CELL] < 200).sum()
            if any(n.startswith(("char:", "colour:", "centre:")) for n in cell):
                assert ink > 0, (scene, index, cell)
    shapes = named(ShapeScene(objects=(Shape("red", "circle", 20, 100, "big"),)))
    assert "centre:red:circle:big" in shapes[(100 // CELL) * side + 20 // CELL]
    assert sum("colour:red" in cell for cell in shapes) >= 4 and not any(shapes[:side])
    bars = named(BarScene(bars=(("green", 3), ("purple", 9))))
    assert sum("bar_top:9" in cell for cell in bars) == 1 and sum("bar_top:3" in cell for cell in bars) == 1


def test_cell_loss_trains_and_is_named_in_the_manifest():
    config = TrainConfig(steps=3, batch_size=4, dimensions=SMALL, cell_weight=1.0)
    first, manifest = train(None, config)
    plain, _ = train(None, TrainConfig(steps=3, batch_size=4, dimensions=SMALL))
    assert not _same_weights(first, plain)  # the cell loss reached the weights
    assert manifest["command"].endswith("--cell-weight 1") and manifest["config"]["cell_weight"] == 1.0
    with pytest.raises(ConfigError, match="cell_weight must be a number"):
        TrainConfig(cell_weight=-1)
    # the saved model is a plain Qwen2-VL: no head of the training is in it
    assert not any("cell" in name or "aux" in name for name in first.model.state_dict())


def test_position_loss_reads_each_token_s_row_and_column_in_the_order_of_the_merged_tokens():
    count = GRID * GRID
    heads = VisionHeads(count, 0.0, 0.0, position_weight=2.0)
    with torch.no_grad():  # a head that reads a one-hot token's index as its row and column, row by row
        weight = torch.zeros(2 * GRID, count)
        for index in range(count):
            weight[index // GRID, index] = weight[GRID + index % GRID, index] = 50.0
        heads.position.weight.copy_(weight)
        heads.position.bias.zero_()
    tokens = torch.eye(count).expand(3, count, count)
    assert heads.loss(tokens, {}).item() < 1e-6
    transposed = tokens.reshape(3, GRID, GRID, count).transpose(1, 2).reshape(3, count, count)
    assert heads.loss(transposed, {}).item() > 2.0 * 20  # rows read as columns: weight 2 x two wrong reads
    with pytest.raises(ValueError, match=f"expects {count} tokens per image, got 4"):
        heads.loss(tokens[:, :4], {})


def test_a_larger_image_side_gives_more_image_tokens_and_is_saved_and_named(tmp_path):
    trained, manifest = train(tmp_path / "m", TrainConfig(steps=2, batch_size=4, dimensions=SMALL, image_side=192,
                                                          aux_weight=1.0))
    assert manifest["command"].endswith("--image-side 192") and manifest["config"]["image_side"] == 192
    picture = next(iter(generate_items("test", 1))).image()
    for lvlm in (trained, load_embedded(tmp_path / "m")):
        grid = lvlm.processor.image_processor(images=[picture], return_tensors="pt")["image_grid_thw"]
        assert grid.tolist() == [[1, 24, 24]]  # 192 / 8 patches a side: (192 / 16)^2 = 144 merged tokens
    for bad, message in ((200, "multiple of 16"), (32, "image_side must be"), (1024, "image_side must be")):
        with pytest.raises(ConfigError, match=message):
            TrainConfig(image_side=bad)
    with pytest.raises(ConfigError, match="set position_weight to 0"):
        TrainConfig(image_side=192, position_weight=1.0)
    # the cell loss at that side, on the own renderer's pictures and on other tools' (their layouts)
    _, manifest = train(None, TrainConfig(steps=2, batch_size=4, dimensions=SMALL, image_side=192, cell_weight=1.0,
                                          tool_share=1.0, tool_cells=True, seed=3))
    assert math.isfinite(manifest["first_loss"]) and math.isfinite(manifest["final_loss_mean_last_50"])


@pytest.mark.parametrize("side", [192, 256])
def test_cell_labels_at_a_larger_image_side_are_the_128_grids_facts_finer(side):
    """The own renderer's cell labels at another side: one set per token of the processor's grid, and
    each point fact (a character, a line, a shape's centre, a bar's end) in the token that covers the
    same place of the 128-pixel grid's."""
    from redgraph.lab.architecture import CELL
    from redgraph.lab.scene_labels import CELL_VOCABULARY, cell_labels

    names = {index: name for name, index in CELL_VOCABULARY.items()}
    processor = build_untrained(SMALL, image_side=side)[1]

    def points(facts):  # a character without the half of its square it is in
        kept = {names[f] for f in facts if names[f].split(":")[0] in ("char", "line", "title", "centre", "bar_top")}
        return {":".join(n.split(":")[:2]) if n.startswith("char:") else n for n in kept}

    for item in list(generate_items("train", 9))[:9]:
        coarse, fine = cell_labels(item.scene, CELL), cell_labels(item.scene, CELL, image_side=side)
        grid = processor.image_processor(images=[item.image()], return_tensors="pt")["image_grid_thw"][0].tolist()
        assert len(fine) == grid[1] * grid[2] // 4 == (side // CELL) ** 2
        fine_side, coarse_side = side // CELL, 128 // CELL
        found = set()
        for index, facts in enumerate(fine):
            row, column = divmod(index, fine_side)
            parent = coarse[(row * coarse_side // fine_side) * coarse_side + column * coarse_side // fine_side]
            if side == 256:  # each 256 token is a quarter of one 128 token
                assert points(facts) <= points(parent), (item.question_id, index)
            found |= points(facts)
        assert found == set().union(*map(points, coarse))  # nothing lost, nothing new


def test_position_loss_trains_and_is_named_in_the_manifest():
    first, manifest = train(None, TrainConfig(steps=3, batch_size=4, dimensions=SMALL, position_weight=1.0))
    plain, _ = train(None, TrainConfig(steps=3, batch_size=4, dimensions=SMALL))
    assert not _same_weights(first, plain)  # the position loss reached the weights
    assert manifest["command"].endswith("--position-weight 1") and manifest["config"]["position_weight"] == 1.0
    assert not any("position" in name.split(".")[0] for name in first.model.state_dict())
    with pytest.raises(ConfigError, match="position_weight must be a number from 0 to 100, got -1"):
        TrainConfig(position_weight=-1)


def test_auxiliary_scene_loss_trains_and_reproduces():
    config = TrainConfig(steps=3, batch_size=4, dimensions=SMALL, aux_weight=5.0)
    first, manifest = train(None, config)
    again, _ = train(None, config)
    plain, _ = train(None, TrainConfig(steps=3, batch_size=4, dimensions=SMALL))
    a, b, c = (m.model.state_dict() for m in (first, again, plain))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the auxiliary loss reached the weights
    assert manifest["command"].endswith("--aux-weight 5") and manifest["config"]["aux_weight"] == 5.0
    with pytest.raises(Exception, match="aux_weight must be a number"):
        TrainConfig(aux_weight=-1)


def test_task_weights_set_the_mixture_and_are_named_in_the_manifest():
    weights = parse_task_weights("verify=3, cot=0")
    assert weights == (1.0, 1.0, 0.0, 1.0, 3.0) and format_task_weights(weights) == (
        "answer=1,rationale=1,cot=0,rationale_answer=1,verify=3")
    config = TrainConfig(steps=1, batch_size=400, dimensions=SMALL, task_weights=weights)
    processor = build_untrained(SMALL, seed=0)[1]
    drawn = Counter(e.task for e in sample_batch(0, config, processor, random.Random(0)))
    assert drawn["cot"] == 0 and drawn["verify"] > 2 * drawn["answer"] > 0
    only_verify = TrainConfig(steps=2, batch_size=4, dimensions=SMALL, task_weights=(0, 0, 0, 0, 1))
    _, manifest = train(None, only_verify)
    assert manifest["command"].endswith("--task-weights answer=0,rationale=0,cot=0,rationale_answer=0,verify=1")
    assert list(manifest["config"]["task_weights"]) == [0.0, 0.0, 0.0, 0.0, 1.0]
    # equal weights are the shipped model's uniform draw, so its manifest command stays as it was
    assert "--task-weights" not in train(None, TrainConfig(steps=1, batch_size=2, dimensions=SMALL,
                                                           task_weights=(2,) * 5))[1]["command"]
    for bad, message in (("verify", "cannot read 'verify'"), ("speak=2", "cannot read 'speak=2'"),
                         ("verify=lots", "must be a number, got 'lots'")):
        with pytest.raises(ConfigError, match=message):
            parse_task_weights(bad)
    for bad in ((0,) * 5, (1, 1, 1, 1), (1, 1, 1, 1, -1), (1, 1, 1, 1, True)):
        with pytest.raises(ConfigError, match="task_weights must be 5 numbers"):
            TrainConfig(task_weights=bad)


class Stop(Exception):
    pass


def stop_at_three(step: int, loss: float) -> None:
    """A run's progress callback that stops it after its third step (a run killed mid-way)."""
    if step == 3:
        raise Stop


def _same_weights(a, b) -> bool:
    first, second = a.model.state_dict(), b.model.state_dict()
    return all(torch.equal(first[k], second[k]) for k in first)


def test_a_stopped_run_resumes_to_the_uninterrupted_weights(tmp_path):
    config = TrainConfig(steps=5, batch_size=4, warmup_steps=2, dimensions=SMALL, aux_weight=2.0, cell_weight=1.0,
                         position_weight=1.0)  # every training head's state is saved and restored
    whole, _ = train(None, config)

    with pytest.raises(Stop):
        train(tmp_path, config, save_every=2, on_progress=stop_at_three)
    assert json.loads((tmp_path / "redgraph_manifest.json").read_text())["steps_done"] == 2
    steps = []
    resumed, manifest = train(tmp_path, config, save_every=2, resume=True, on_progress=lambda s, _: steps.append(s))
    assert steps == [3, 4, 5] and manifest["steps_done"] == 5 and manifest["finished"]
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match=r"other settings \(steps\)"):
        train(tmp_path, TrainConfig(steps=6, batch_size=4, warmup_steps=2, dimensions=SMALL, aux_weight=2.0,
                                    cell_weight=1.0, position_weight=1.0), resume=True)
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(tmp_path / "empty", config, resume=True)


def test_a_run_killed_while_it_saves_resumes_from_the_save_before(tmp_path, monkeypatch):
    config = TrainConfig(steps=5, batch_size=4, warmup_steps=2, dimensions=SMALL, aux_weight=2.0)
    whole, _ = train(None, config)

    class Killed(BaseException):
        pass

    saves = []
    real_save = torch.save

    def killed_on_the_second_save(obj, file):
        saves.append(file)
        if len(saves) == 2:  # the save after step 4: half the file written, then the process dies
            with open(file, "wb") as handle:
                handle.write(b"half a file")
            raise Killed
        real_save(obj, file)

    monkeypatch.setattr(torch, "save", killed_on_the_second_save)
    with pytest.raises(Killed):
        train(tmp_path, config, save_every=2)
    monkeypatch.setattr(torch, "save", real_save)
    assert json.loads((tmp_path / "redgraph_manifest.json").read_text())["steps_done"] == 2
    steps = []
    resumed, manifest = train(tmp_path, config, save_every=2, resume=True, on_progress=lambda s, _: steps.append(s))
    assert steps == [3, 4, 5] and manifest["finished"] and _same_weights(whole, resumed)
    (tmp_path / "training_state.pt").write_bytes(b"half a file")
    with pytest.raises(ConfigError, match=r"training_state.pt cannot be read .* cannot be resumed; train into a new"):
        train(tmp_path, config, resume=True)


def test_a_run_stopped_after_a_step_resumes_to_the_uninterrupted_weights(tmp_path):
    config = TrainConfig(steps=4, batch_size=4, warmup_steps=1, dimensions=SMALL, cell_weight=1.0)
    whole, _ = train(None, config)
    _, partial = train(tmp_path, config, stop_after=2)
    assert partial["steps_done"] == 2 and not partial["finished"]
    assert json.loads((tmp_path / "redgraph_manifest.json").read_text())["steps_done"] == 2
    resumed, manifest = train(tmp_path, config, resume=True)
    assert _same_weights(whole, resumed) and manifest["steps_done"] == 4 and manifest["finished"]
    with pytest.raises(ConfigError, match=r"already done 4 steps, past stop_after \(3\)"):
        train(tmp_path, config, resume=True, stop_after=3)
    with pytest.raises(ConfigError, match=r"stop_after \(5\) is past the end of the schedule \(4 steps\)"):
        train(None, config, stop_after=5)
    with pytest.raises(ConfigError, match="stop_after"):
        train(None, config, stop_after=0)
    result = CliRunner().invoke(app, ["embedded", "train", str(tmp_path / "cli"), "--steps", "2", "--batch-size", "2",
                                      "--stop-after", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "cli" / "redgraph_manifest.json").read_text())["finished"] is False


def test_a_run_keeps_its_models_along_the_way_for_a_learning_curve(tmp_path):
    config = TrainConfig(steps=4, batch_size=2, warmup_steps=1, dimensions=SMALL)
    whole, manifest = train(tmp_path / "run", config, keep_every=2)
    assert sorted(p.name for p in (tmp_path / "run" / "steps").iterdir()) == ["2", "4"]
    halfway = json.loads((tmp_path / "run" / "steps" / "2" / "redgraph_manifest.json").read_text())
    assert halfway["steps_done"] == 2 and not halfway["finished"] and halfway["command"] == manifest["command"]
    assert not (tmp_path / "run" / "steps" / "2" / "training_state.pt").exists()
    assert _same_weights(load_embedded(tmp_path / "run" / "steps" / "4"), whole)
    stopped, _ = train(tmp_path / "stopped", config, stop_after=2, save_every=1)
    assert _same_weights(load_embedded(tmp_path / "run" / "steps" / "2"), stopped)
    with pytest.raises(ConfigError, match="keep_every needs a folder"):
        train(None, config, keep_every=2)
    with pytest.raises(ConfigError, match="keep_every"):
        train(tmp_path / "bad", config, keep_every=0)
    result = CliRunner().invoke(app, ["embedded", "train", str(tmp_path / "cli"), "--steps", "2", "--batch-size", "2",
                                      "--keep-every", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "cli" / "steps" / "1" / "redgraph_manifest.json").read_text())["steps_done"] == 1


def test_batches_mask_everything_but_the_answer():
    lvlm, _ = train(None, TrainConfig(steps=1, batch_size=2, dimensions=SMALL))
    examples = sample_batch(0, TrainConfig(batch_size=6), lvlm.processor, random.Random(0))
    batch = batch_tensors(examples, lvlm.processor)
    tokenizer = lvlm.tokenizer
    for row, example in zip(batch["labels"], examples):
        kept = row[row != -100].tolist()
        assert tokenizer.decode(kept) == example.target + tokenizer.eos_token
    assert int((batch["input_ids"] == lvlm.processor.image_token_id).sum()) == 64 * sum(
        e.image is not None for e in examples)


def test_train_command_writes_a_loadable_checkpoint(tmp_path):
    result = CliRunner().invoke(app, ["embedded", "train", str(tmp_path / "ckpt"), "--steps", "2", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "ckpt" / "redgraph_manifest.json").read_text())
    assert manifest["steps_done"] == 2 and manifest["finished"]
    lvlm = load_embedded(tmp_path / "ckpt")
    summary = evaluate(lvlm, limit=3, batch_size=3)
    assert set(summary["overall"]) == set(METRICS)
    assert all(0.0 <= v <= 1.0 for v in summary["overall"].values())
    other = CliRunner().invoke(app, ["embedded", "train", str(tmp_path / "ckpt"), "--steps", "3", "--batch-size", "2",
                                     "--resume"])
    assert other.exit_code == 2 and "other settings (steps)" in other.output


@pytest.fixture(scope="module")
def shipped():
    return load_embedded()


def test_shipped_model_loads_offline_and_answers(shipped):
    assert shipped.family == "qwen2_vl" and shipped.name == "redgraph-embedded"
    assert sum(f.stat().st_size for f in EMBEDDED_DIR.iterdir()) < 30e6
    items = list(generate_items("test", 12))
    from_rationale = generate_text(
        shipped, [rationale_branch_text(shipped.processor, i.gold_rationale, i.question) for i in items], None, 8)
    assert from_rationale == [i.answer for i in items]  # held out: 1.000 over 600 items (BENCHMARKS.md)
    from_image = generate_text(shipped, [image_branch_text(shipped.processor, i.question) for i in items],
                               [i.image() for i in items], 8)
    assert all(answer.strip() for answer in from_image)  # image answers: 0.89 held out (BENCHMARKS.md)


def test_shipped_model_reads_bar_charts_and_documents_from_the_image(shipped):
    items = [item for item in generate_items("test", 36) if item.kind != "shapes"]
    answers = generate_text(shipped, [image_branch_text(shipped.processor, i.question) for i in items],
                            [i.image() for i in items], 8)
    right = sum(answer.strip() == item.answer for answer, item in zip(answers, items))
    # bar values, comparisons, titles and field values: 0.998 of 400 held out (BENCHMARKS.md); measured 24 of 24
    assert len(items) == 24 and right >= 22, [(i.question, i.answer, a) for i, a in zip(items, answers)]


def test_shipped_model_reads_where_shapes_are_from_the_image(shipped):
    relations = (i for i in generate_items("test", 10**6) if i.category in ("relation_lr", "relation_ab"))
    items = list(itertools.islice(relations, 32))
    answers = generate_text(shipped, [image_branch_text(shipped.processor, i.question) for i in items],
                            [i.image() for i in items], 8)
    right = sum(answer.strip() == item.answer for answer, item in zip(answers, items))
    given = Counter(answer.strip() for answer in answers)
    # Left/right and above/below (0.82 and 0.83 held out, BENCHMARKS.md; chance 0.5). The model shipped
    # before the relation curriculum answered 17 of these 32, "right" to every left/right question and
    # "below" once; stage 14 answered 24; stages 16 and 22 (this one) 26, giving all four answers.
    assert set(given) == {"left", "right", "above", "below"}, given
    assert right >= 22, [(i.question, i.answer, a) for i, a in zip(items, answers)]


@pytest.mark.parametrize("damage", ["missing_weights", "truncated_weights", "bad_config", "missing_tokenizer"])
def test_damaged_checkpoint_names_the_file(tmp_path, damage):
    folder = tmp_path / "ckpt"
    shutil.copytree(EMBEDDED_DIR, folder)
    target = {"missing_weights": "model.safetensors", "truncated_weights": "model.safetensors",
              "bad_config": "config.json", "missing_tokenizer": "tokenizer.json"}[damage]
    path = folder / target
    if damage.startswith("missing"):
        path.unlink()
    elif damage == "truncated_weights":
        path.write_bytes(path.read_bytes()[:1000])
    else:
        path.write_text("{ not json")
    with pytest.raises(ModelLoadError, match=str(path).replace("\\", "\\\\")):
        load_embedded(folder)


def test_any_worker_count_gives_the_same_stream_and_weights():
    config = TrainConfig(steps=3, batch_size=6, warmup_steps=2, dimensions=SMALL, aux_weight=1.0, precision="bfloat16")
    alone, manifest = train(None, config, workers=0)
    helped, helped_manifest = train(None, config, workers=2)
    assert _same_weights(alone, helped)
    assert manifest["first_loss"] == helped_manifest["first_loss"]
    assert helped_manifest["data_workers"] == 2 and helped_manifest["examples_seen"] == 18
    assert helped_manifest["device"] == "cpu" and helped_manifest["dtype"].startswith("bfloat16")
    assert helped_manifest["examples_per_second"] > 0


def test_each_example_of_stream_2_comes_from_its_own_seed():
    from redgraph.lab.batches import step_examples

    processor = build_untrained(SMALL, seed=0)[1]
    big = TrainConfig(batch_size=8, dimensions=SMALL)
    small = TrainConfig(batch_size=4, dimensions=SMALL)
    # Example 4 is the first of step 1 at batch 4 and the fifth of step 0 at batch 8: the same example.
    a, b = step_examples(0, big, processor)[4], step_examples(1, small, processor)[0]
    assert (a.task, a.prompt, a.target) == (b.task, b.prompt, b.target)
    assert [e.task for e in step_examples(0, big, processor)] != [e.task for e in step_examples(1, big, processor)]


def test_micro_batches_give_the_same_step_up_to_rounding():
    one = TrainConfig(steps=2, batch_size=8, warmup_steps=1, dimensions=SMALL, aux_weight=2.0, precision="float32")
    four = TrainConfig(steps=2, batch_size=8, warmup_steps=1, dimensions=SMALL, aux_weight=2.0, precision="float32",
                       accumulate=4)
    a, manifest_a = train(None, one)
    b, manifest_b = train(None, four)
    assert abs(manifest_a["first_loss"] - manifest_b["first_loss"]) < 1e-4
    first, second = a.model.state_dict(), b.model.state_dict()
    assert max(float((first[k] - second[k]).abs().max()) for k in first) < 1e-4
    assert manifest_b["command"].endswith("--accumulate 4 --aux-weight 2") and "--precision float32" in manifest_b["command"]
    with pytest.raises(ConfigError, match="accumulate"):
        TrainConfig(batch_size=2, accumulate=3)


def test_positions_made_by_the_data_workers_equal_the_models_own():
    from redgraph.lab.batches import rope_index

    model, processor = build_untrained(SMALL, seed=0)
    examples = sample_batch(0, TrainConfig(batch_size=10, dimensions=SMALL), processor)
    assert {e.image is None for e in examples} == {True, False}  # text-only and image rows together
    batch = batch_tensors(examples, processor, rope_index(model.config))
    assert {"position_ids", "image_position_ids", "image_cu_seqlens"} <= set(batch)
    plain = {k: v for k, v in batch.items() if k not in ("position_ids", "image_position_ids", "image_cu_seqlens")}
    with torch.no_grad():
        assert torch.equal(example_loss(model, batch), example_loss(model, plain))
        # ... and the precomputed values are used: wrong vision positions change the loss
        wrong = dict(batch, image_position_ids=torch.zeros_like(batch["image_position_ids"]))
        assert not torch.equal(example_loss(model, wrong), example_loss(model, plain))


def test_a_resumed_run_with_workers_and_micro_batches_equals_an_uninterrupted_one(tmp_path):
    config = TrainConfig(steps=4, batch_size=6, warmup_steps=2, dimensions=SMALL, accumulate=2, aux_weight=1.0)
    whole, _ = train(None, config)

    with pytest.raises(Stop):
        train(tmp_path, config, save_every=2, on_progress=stop_at_three, workers=2)
    resumed, manifest = train(tmp_path, config, save_every=2, resume=True, workers=1)
    assert _same_weights(whole, resumed) and manifest["steps_done"] == 4 and manifest["examples_seen"] == 24


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_an_unavailable_device_is_refused_with_what_to_use(tmp_path):
    from redgraph.lab.precision import check_device

    with pytest.raises(ConfigError, match=r"sees no CUDA device; use --device cpu"):
        check_device("cuda")
    with pytest.raises(ConfigError, match="device must be cpu or cuda"):
        check_device("tpu")
    result = CliRunner().invoke(app, ["embedded", "train", str(tmp_path / "out"), "--steps", "1", "--device", "cuda"])
    assert result.exit_code == 2 and "sees no CUDA device" in result.output
    assert not (tmp_path / "out").exists()


def test_auto_precision_takes_bf16_only_where_it_is_measured_faster_and_a_resumed_run_keeps_its_own(tmp_path,
                                                                                                    monkeypatch):
    import importlib

    training = importlib.import_module("redgraph.lab.precision")

    assert 0 < training.bf16_speedup(side=32, repeats=1) < float("inf")  # this machine's own measurement
    monkeypatch.setattr(training, "bf16_speedup", lambda: 0.01)  # an AVX2-only CPU (BENCHMARKS.md)
    assert training.auto_precision("cpu") == "float32"
    monkeypatch.setattr(training, "bf16_speedup", lambda: 1.8)  # a CPU with native bf16
    assert training.auto_precision("cpu") == "bfloat16"
    with pytest.raises(ConfigError, match="sees no CUDA device"):
        training.auto_precision("cuda")
    # the CLI's and TrainConfig's default is auto, and the manifest names what it chose, so it reproduces
    monkeypatch.setattr(training, "bf16_speedup", lambda: 0.01)
    _, api = train(None, TrainConfig(steps=1, batch_size=2, dimensions=SMALL))
    assert api["config"]["precision"] == "float32" and api["dtype"] == "float32"
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["embedded", "train", str(out), "--steps", "2", "--batch-size", "2",
                                      "--stop-after", "1"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "redgraph_manifest.json").read_text())
    assert manifest["config"]["precision"] == "float32" and "--precision float32" in manifest["command"]
    monkeypatch.setattr(training, "bf16_speedup", lambda: 1.8)  # resumed on a machine that would pick bf16
    assert training.auto_precision("cpu", out) == "float32"
    resumed = CliRunner().invoke(app, ["embedded", "train", str(out), "--steps", "2", "--batch-size", "2", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((out / "redgraph_manifest.json").read_text())["finished"]


def test_stream_1_is_drawn_in_process_only():
    with pytest.raises(ConfigError, match="stream 1"):
        train(None, TrainConfig(steps=1, batch_size=2, dimensions=SMALL, data_stream=1), workers=2)
    for bad in (0, 3, True):
        with pytest.raises(ConfigError, match="data_stream must be"):
            TrainConfig(data_stream=bad)
    with pytest.raises(ConfigError, match="precision must be"):
        TrainConfig(precision="float16")


def test_a_run_can_start_from_a_checkpoints_weights_and_resumes(tmp_path):
    base_dir = tmp_path / "base"
    base, _ = train(base_dir, TrainConfig(steps=2, batch_size=4, warmup_steps=1, dimensions=SMALL))
    # at a vanishing learning rate the run ends where it starts: on the base's weights, not on fresh ones
    still = dict(steps=1, batch_size=4, warmup_steps=1, dimensions=SMALL, seed=1, learning_rate=1e-12)
    started, manifest = train(None, TrainConfig(**still, init_from=str(base_dir)))
    fresh, _ = train(None, TrainConfig(**still))
    a, b, c = (m.model.state_dict() for m in (base, started, fresh))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert not all(torch.allclose(a[k], c[k], atol=1e-6) for k in a)
    assert manifest["command"].endswith(f"--init-from {base_dir}")
    digest = hashlib.sha256((base_dir / "model.safetensors").read_bytes()).hexdigest()
    assert manifest["base"]["model_sha256"] == digest and manifest["base"]["examples_seen"] == 8
    assert manifest["base"]["path"] == str(base_dir)  # as the user named it ("embedded" for the shipped model)

    config = TrainConfig(steps=5, batch_size=4, warmup_steps=2, dimensions=SMALL, seed=1, aux_weight=2.0,
                         init_from=str(base_dir))
    whole, _ = train(None, config)
    with pytest.raises(Stop):
        train(tmp_path / "run", config, save_every=2, on_progress=stop_at_three)
    resumed, manifest = train(tmp_path / "run", config, save_every=2, resume=True)
    assert _same_weights(whole, resumed) and manifest["base"]["model_sha256"] == digest

    with pytest.raises(ConfigError, match=r"init_from '.*nowhere': no such folder"):
        train(None, TrainConfig(steps=1, batch_size=2, dimensions=SMALL, init_from=str(tmp_path / "nowhere")))
    with pytest.raises(ConfigError, match=r"init_from 'embedded': that checkpoint has other dimensions \(.*hidden"):
        train(None, TrainConfig(steps=1, batch_size=2, dimensions=SMALL, init_from="embedded"))
    with pytest.raises(ConfigError, match="init_from must be a checkpoint folder"):
        TrainConfig(init_from=" ")


def test_the_interleaved_rope_layout_moves_image_tokens_only():
    blocks, processor = build_untrained(SMALL, seed=3)
    interleaved, _ = build_untrained(SMALL, seed=3, rope_layout="interleaved")
    assert blocks.config.text_config.rope_parameters["mrope_section"] == [4, 2, 2]  # head_dim 16
    assert interleaved.config.text_config.rope_parameters["mrope_section"] == [1, 1, 1, 1, 2, 2]
    item = next(generate_items("validation", 1))
    rng = random.Random(0)
    text_only = batch_tensors([make_example(item, "rationale_answer", processor, rng)], processor)
    with_image = batch_tensors([make_example(item, "answer", processor, rng)], processor)
    with torch.no_grad():
        for model in (blocks, interleaved):
            model.eval()
        inputs = [{k: v for k, v in batch.items() if k not in TARGETS}
                  for batch in (text_only, with_image)]
        same_text = [m(**inputs[0]).logits for m in (blocks, interleaved)]
        image = [m(**inputs[1]).logits for m in (blocks, interleaved)]
    assert torch.equal(*same_text)  # text tokens have equal time, row and column positions
    assert (image[0] - image[1]).abs().max() > 1e-4
    with pytest.raises(ConfigError, match="rope layout must be one of blocks, interleaved, got 'diagonal'"):
        build_untrained(SMALL, rope_layout="diagonal")
    with pytest.raises(ConfigError, match="needs a head dimension of at least 6, got 4"):
        mrope_section(4, "interleaved")


@pytest.mark.parametrize("head_dim", [6, 8, 10, 16, 32, 64, 128])
@pytest.mark.parametrize("layout", ["blocks", "interleaved"])
def test_rope_layouts_rotate_alike_in_every_transformers_5(layout, head_dim):
    section = mrope_section(head_dim, layout)
    frequencies = head_dim // 2
    assert sum(section) == frequencies and all(size >= 0 for size in section)
    # 5.25 gives frequency f the component of its chunk, then repeats the half; 5.0 splits the whole
    # head by the section twice over: a frequency must get one component in both halves.
    owner = [chunk % 3 for chunk, size in enumerate(section) for _ in range(size)]
    whole_head = [chunk % 3 for chunk, size in enumerate(section * 2) for _ in range(size)]
    assert whole_head == owner + owner
    if layout == "interleaved":  # rows and columns get fast frequencies too
        assert {1, 2} <= set(owner[:4])


def test_a_run_can_change_the_rope_layout_of_its_base_and_names_it(tmp_path):
    base_dir = tmp_path / "base"
    _, scratch = train(base_dir, TrainConfig(steps=1, batch_size=2, warmup_steps=1, dimensions=SMALL))
    assert scratch["config"]["rope_layout"] == "blocks" and " --rope-layout blocks " in scratch["command"]  # auto
    config = TrainConfig(steps=1, batch_size=2, warmup_steps=1, dimensions=SMALL, init_from=str(base_dir),
                         rope_layout="interleaved")
    _, manifest = train(tmp_path / "run", config)
    assert " --rope-layout interleaved " in manifest["command"] and manifest["config"]["rope_layout"] == "interleaved"
    reloaded = load_embedded(tmp_path / "run")
    assert reloaded.model.config.text_config.rope_parameters["mrope_section"] == [1, 1, 1, 1, 2, 2]
    assert reloaded.model.model.language_model.rotary_emb.mrope_section == [1, 1, 1, 1, 2, 2]
    with pytest.raises(ConfigError, match="rope_layout must be one of blocks, interleaved, auto, got 'Interleaved'"):
        TrainConfig(rope_layout="Interleaved")
    result = CliRunner().invoke(app, ["embedded", "train", str(tmp_path / "cli"), "--rope-layout", "rows"])
    assert result.exit_code != 0 and "rope_layout must be one of blocks, interleaved, auto, got 'rows'" in result.output


def test_auto_rope_layout_keeps_the_base_s_own_and_a_resumed_run_s(tmp_path):
    interleaved = TrainConfig(steps=2, batch_size=2, warmup_steps=1, dimensions=SMALL, rope_layout="interleaved")
    train(tmp_path / "base", interleaved)
    continued = TrainConfig(steps=2, batch_size=2, warmup_steps=1, dimensions=SMALL, init_from=str(tmp_path / "base"))
    assert continued.rope_layout == "auto"
    lvlm, manifest = train(tmp_path / "next", continued, stop_after=1, save_every=1)
    assert manifest["config"]["rope_layout"] == "interleaved"  # not switched back to blocks unasked
    assert lvlm.model.config.text_config.rope_parameters["mrope_section"] == [1, 1, 1, 1, 2, 2]
    _, resumed = train(tmp_path / "next", continued, resume=True)
    assert resumed["config"]["rope_layout"] == "interleaved" and resumed["finished"]
    switched = dataclasses.replace(continued, rope_layout="blocks")
    assert train(None, switched)[1]["config"]["rope_layout"] == "blocks"  # named: switched
    shipped = dataclasses.replace(continued, init_from="embedded", dimensions=Dimensions())
    assert auto_rope_layout(shipped) == json.loads((EMBEDDED_DIR / "redgraph_manifest.json").read_text())[
        "config"].get("rope_layout", "blocks")
    odd = tmp_path / "odd"
    shutil.copytree(tmp_path / "base", odd)
    config_json = json.loads((odd / "config.json").read_text())
    config_json["text_config"]["rope_parameters"]["mrope_section"] = [2, 2, 4]
    (odd / "config.json").write_text(json.dumps(config_json))
    with pytest.raises(ConfigError, match=r"mrope_section \[2, 2, 4\] is none of the layouts blocks, interleaved"):
        train(None, dataclasses.replace(continued, init_from=str(odd)))


def test_category_weights_set_the_questions_trained_on_and_are_named_in_the_manifest():
    from redgraph.data.posing import ALL_CATEGORIES
    from redgraph.lab.train_config import format_category_weights, parse_category_weights

    weights = parse_category_weights("relation_lr=3, field=0")
    assert weights[ALL_CATEGORIES.index("relation_lr")] == 3.0 and weights[ALL_CATEGORIES.index("field")] == 0.0
    assert format_category_weights(weights) == "relation_lr=3,field=0" and sum(weights) == len(ALL_CATEGORIES) + 1
    only_lr = tuple(float(c == "relation_lr") for c in ALL_CATEGORIES)
    config = TrainConfig(steps=1, batch_size=12, dimensions=SMALL, category_weights=only_lr, task_weights=(1, 0, 0, 0, 0))
    processor = build_untrained(SMALL, seed=0)[1]
    assert {e.target for e in sample_batch(0, config, processor)} == {"left", "right"}
    _, manifest = train(None, TrainConfig(steps=1, batch_size=2, dimensions=SMALL, category_weights=weights))
    assert manifest["command"].endswith("--category-weights relation_lr=3,field=0")
    assert "--category-weights" not in train(None, TrainConfig(steps=1, batch_size=2, dimensions=SMALL))[1]["command"]
    for bad, message in (("relation", "cannot read 'relation'"), ("colour=2", "CATEGORY one of count_colour"),
                         ("field=many", "the weight of field must be a number, got 'many'")):
        with pytest.raises(ConfigError, match=message):
            parse_category_weights(bad)
    with pytest.raises(ConfigError, match=r"category_weights must be 13 numbers"):
        TrainConfig(category_weights=(0,) * len(ALL_CATEGORIES))


def test_evaluation_can_keep_to_some_categories_and_names_a_wrong_one(tmp_path):
    lvlm, _ = train(None, TrainConfig(steps=1, batch_size=2, dimensions=SMALL))
    summary = evaluate(lvlm, limit=4, batch_size=4, categories=["relation_lr", "title"])
    wanted = [i for i in generate_items("test", 200) if i.category in ("relation_lr", "title")][:4]
    assert summary["items"] == 4 and summary["categories"] == ["relation_lr", "title"]
    assert sum(row["n"] for row in summary["per_category"].values()) == 4
    assert {c: row["n"] for c, row in summary["per_category"].items()} == dict(Counter(i.category for i in wanted))
    assert evaluate(lvlm, limit=1, batch_size=1)["categories"] is None
    with pytest.raises(ConfigError, match="unknown question categories 'left'; choose from count_colour"):
        evaluate(lvlm, limit=1, categories=["left"])
    with pytest.raises(ConfigError, match=r"unknown question categories \(none given\)"):
        evaluate(lvlm, limit=1, categories=[])
    result = CliRunner().invoke(app, ["embedded", "evaluate", "--limit", "1", "--categories", "relation,size"])
    assert result.exit_code != 0 and "unknown question categories 'relation'" in result.output


def test_evaluation_gives_each_figure_its_95_percent_interval():
    summary = evaluate(load_embedded(), limit=6, batch_size=6)
    intervals = summary["ci95"]
    assert set(intervals["overall"]) == set(METRICS)
    assert set(intervals["per_kind"]) == set(summary["per_kind"]) == {"shapes", "bars", "document"}
    assert set(intervals["per_category"]) == set(summary["per_category"])
    for group in ("per_kind", "per_category"):
        for name, row in summary[group].items():
            for metric, (low, high) in intervals[group][name].items():
                assert low <= row[metric] <= high and high - low > 0.3  # 1 to 2 items pin nothing down
    low, high = intervals["overall"]["image_answer_acc"]
    assert low <= summary["overall"]["image_answer_acc"] <= high
    result = CliRunner().invoke(app, ["embedded", "evaluate", "--limit", "6"], env={"COLUMNS": "200"})  # same items
    assert result.exit_code == 0, result.output
    assert f"[{low:.2f}-{high:.2f}]" in result.output.split("overall")[1]
    assert "[low-high]: the 95% interval of image_answer_acc" in result.output
