"""Training recipes: stages run one after another from each other's weights, a stopped recipe
resumes to the uninterrupted weights, the built-in recipe is the shipped model's own stages, and
every bad recipe is refused with what to change."""

from __future__ import annotations

import hashlib
import shlex

import pytest
import torch
import typer
from typer.testing import CliRunner

from redgraph.cli import app
from redgraph.errors import ConfigError
from redgraph.lab.recipe import BUILT_IN, Recipe, Stage, load_recipe, recipe_commands, run_recipe
from redgraph.lab.train_config import TrainConfig, parse_category_weights, parse_task_weights
from redgraph.models.embedded import load_embedded, manifest
from tests.test_embedded import SMALL, Stop


def _small_recipe(second_seed: int = 1) -> Recipe:
    return Recipe(stages=(
        Stage("first", TrainConfig(steps=4, batch_size=4, warmup_steps=1, dimensions=SMALL), stop_after=3),
        Stage("second", TrainConfig(steps=4, batch_size=4, warmup_steps=1, dimensions=SMALL, seed=second_seed,
                                    aux_weight=2.0, task_weights=parse_task_weights("cot=0"))),
    ))


def _weights(folder):
    return load_embedded(folder).model.state_dict()


def test_a_recipe_runs_each_stage_from_the_previous_one_and_a_stopped_one_resumes_to_the_same_weights(tmp_path):
    recipe = _small_recipe()
    manifests = run_recipe(tmp_path / "whole", recipe)
    first, second = recipe.folders(tmp_path / "whole")
    assert (first.name, second.name) == ("01-first", "02-second")
    assert manifests[0]["steps_done"] == 3 and not manifests[0]["finished"]  # stop_after: 3 of its 4 steps
    assert manifests[1]["steps_done"] == 4 and manifests[1]["finished"]
    digest = hashlib.sha256((first / "model.safetensors").read_bytes()).hexdigest()
    assert manifests[1]["base"] == {**manifests[1]["base"], "path": str(first), "model_sha256": digest,
                                    "examples_seen": 12}

    def stop_in_the_second_stage(step, loss):
        if seen and seen[-1][0] == 2 and step == 3:
            raise Stop

    seen = []
    with pytest.raises(Stop):
        run_recipe(tmp_path / "stopped", recipe, save_every=2, on_progress=stop_in_the_second_stage,
                   on_stage=lambda index, stage, folder, status: seen.append((index, status)))
    assert seen == [(1, "started"), (2, "started")]
    assert manifest(tmp_path / "stopped" / "02-second")["steps_done"] == 2
    seen, steps = [], []
    run_recipe(tmp_path / "stopped", recipe, save_every=2, on_progress=lambda step, _: steps.append(step),
               on_stage=lambda index, stage, folder, status: seen.append((index, status)))
    assert seen == [(1, "done"), (2, "resumed")] and steps == [3, 4]
    whole, resumed = _weights(second), _weights(tmp_path / "stopped" / "02-second")
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)

    seen = []
    run_recipe(tmp_path / "stopped", recipe, on_stage=lambda index, stage, folder, status: seen.append(status))
    assert seen == ["done", "done"]  # a finished recipe trains nothing again
    with pytest.raises(ConfigError, match=r"02-second holds a run with other settings \(seed\) than stage 2 "
                                          r"\(second\) of this recipe; run the recipe into a new folder"):
        run_recipe(tmp_path / "stopped", _small_recipe(second_seed=5))


def _parse_train_command(command: str) -> dict:
    """The options a ``redgraph embedded train`` command line sets, as the CLI reads them."""
    train = typer.main.get_command(app).commands["embedded"].commands["train"]
    args = shlex.split(command)[3:]  # past "redgraph embedded train"
    return train.make_context("train", args).params


def test_the_built_in_recipe_is_the_shipped_model_s_own_stages(tmp_path):
    recipe = load_recipe(BUILT_IN)
    chain, record = [], manifest()
    while record:
        chain.append(record)
        record = record.get("base")
    chain.reverse()
    assert len(recipe.stages) == len(chain) and recipe.examples == sum(r["examples_seen"] for r in chain)
    assert f"{recipe.examples:,} examples" in manifest()["note"] and f"{recipe.examples:,} examples" in recipe.description
    for index, (stage, record) in enumerate(zip(recipe.stages, chain), 1):
        shipped = _parse_train_command(record["command"])
        config = stage.config
        assert stage.examples == record["examples_seen"], index
        for name in ("steps", "seed", "batch_size", "learning_rate", "warmup_steps", "accumulate", "aux_weight",
                     "cell_weight"):
            assert getattr(config, name) == pytest.approx(shipped[name]), (index, name)
        assert config.task_weights == (parse_task_weights(shipped["task_weights"]) if shipped["task_weights"]
                                       else (1.0,) * len(config.task_weights)), index
        assert config.category_weights == (parse_category_weights(shipped["category_weights"])
                                           if shipped["category_weights"] else (1.0,) * len(config.category_weights))
        # stages 1-4 were trained before their commands named the precision and the rope layout: then the
        # defaults, bfloat16 and Qwen2-VL's blocks (BENCHMARKS.md); later commands name both
        assert config.precision == (shipped["precision"] if shipped["precision"] != "auto" else "bfloat16"), index
        assert config.rope_layout == (shipped["rope_layout"] if shipped["rope_layout"] != "auto" else "blocks"), index
    commands = recipe_commands(recipe, tmp_path)
    assert commands[0].startswith(f"redgraph embedded train {tmp_path / '01-base'} --steps 8000 --seed 0")
    assert commands[0].endswith("--stop-after 4000") and "--init-from" not in commands[0]
    bases = [shlex.split(command)[shlex.split(command).index("--init-from") + 1] for command in commands[1:]]
    assert bases == [str(folder) for folder in recipe.folders(tmp_path)[:-1]]


@pytest.mark.parametrize("text, message", [
    ("[[stages]]\nname = 'a'\nsteps = 2\nthreads = 4\n",
     r"stage 1 \(a\): unknown option 'threads'; .*threads, the device and workers are the run's"),
    ("[[stages]]\nname = 'a'\nstep = 2\n", r"stage 1 \(a\): unknown option 'step'; the options are name, stop_after"),
    ("[[stages]]\nname = 'A b'\n", r"stage 1: name must be lower-case letters.*got 'A b'"),
    ("[[stages]]\nname = 'a'\n[[stages]]\nname = 'a'\n", "stage names must differ, a is repeated"),
    ("[[stages]]\nname = 'a'\n[[stages]]\nname = 'b'\ninit_from = 'embedded'\n",
     "stage 'b' names init_from, but every stage after the first starts from the previous one"),
    ("[defaults]\nstop_after = 3\n[[stages]]\nname = 'a'\n", "stop_after is a stage's own, not a default"),
    ("[[stages]]\nname = 'a'\nsteps = 4\nstop_after = 5\n",
     r"stage 1 \(a\): stop_after \(5\) is past the end of the schedule \(4 steps\)"),
    ("[[stages]]\nname = 'a'\ncategory_weights = { relation_left = 2 }\n",
     r"stage 1 \(a\): category_weights: --category-weights: cannot read 'relation_left=2'"),
    ("[[stages]]\nname = 'a'\ntask_weights = 3\n", r"task_weights must be a table \(name = weight\)"),
    ("[[stages]]\nname = 'a'\nlearning_rate = 2\n", r"stage 1 \(a\): learning_rate must be between 0 and 1, got 2"),
    ("[[stages]]\nname = 'a'\nsteps = 'many'\n", r"stage 1 \(a\): steps must be a whole number >= 1, got 'many'"),
    ("[[stages]]\nname = 'a'\nseed = '7'\n", r"stage 1 \(a\): seed must be a whole number, got '7'"),
    ("[[stages]]\nname = 'a'\nweight_decay = 'none'\n",
     r"stage 1 \(a\): weight_decay must be a number from 0 to 1, got 'none'"),
    ("description = 'none'\n", "it has no stages"),
    ("stages = 3\n", "stages an array of"),
    ("[[stages]\nname = 'a'\n", "not valid TOML"),
    ("[[stage]]\nname = 'a'\n", "unknown key 'stage'; a recipe has description, \\[defaults\\], \\[charts\\] and "
                                  "\\[\\[stages\\]\\]"),
    ("[charts]\ncount = 0\n[[stages]]\nname = 'a'\n", "charts count must be a whole number"),
])
def test_a_bad_recipe_is_refused_with_what_to_change(tmp_path, text, message):
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_recipe(path)


def test_a_missing_recipe_names_the_built_in_one(tmp_path):
    with pytest.raises(ConfigError, match=r"recipe '.*nowhere.toml': no such file; .* or 'embedded'"):
        load_recipe(tmp_path / "nowhere.toml")


def test_the_recipe_command_runs_resumes_and_prints_its_stages(tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_text("description = 'two short stages'\n[defaults]\nbatch_size = 2\nprecision = 'float32'\n"
                    "[[stages]]\nname = 'one'\nsteps = 2\nwarmup_steps = 1\n"
                    "[[stages]]\nname = 'two'\nsteps = 2\nwarmup_steps = 1\nseed = 3\n")
    runner = CliRunner()
    dry = runner.invoke(app, ["embedded", "recipe", str(tmp_path / "run"), "--recipe", str(path), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"redgraph embedded train {tmp_path / 'run' / '02-two'} --steps 2 --seed 3" in dry.output
    assert f"--init-from {tmp_path / 'run' / '01-one'}" in dry.output and "2 stages, 8 examples" in dry.output
    assert not (tmp_path / "run").exists()

    result = runner.invoke(app, ["embedded", "recipe", str(tmp_path / "run"), "--recipe", str(path)])
    assert result.exit_code == 0, result.output
    assert manifest(tmp_path / "run" / "02-two")["finished"] and f"model: {tmp_path / 'run' / '02-two'}" in result.output
    before = (tmp_path / "run" / "02-two" / "redgraph_manifest.json").read_text()
    again = runner.invoke(app, ["embedded", "recipe", str(tmp_path / "run"), "--recipe", str(path)])
    assert again.exit_code == 0 and "stage 2/2 two: done before" in again.output
    assert (tmp_path / "run" / "02-two" / "redgraph_manifest.json").read_text() == before  # not trained again

    refused = runner.invoke(app, ["embedded", "recipe", str(tmp_path / "x"), "--recipe", str(path), "--device", "tpu"])
    assert refused.exit_code == 2 and "device must be cpu or cuda" in refused.output


def test_a_recipe_draws_its_charts_once_and_its_stages_show_them(tmp_path):
    from redgraph.lab.recipe import Charts, recipe_from_dict

    stage = Stage("charts", TrainConfig(steps=1, batch_size=4, warmup_steps=1, dimensions=SMALL, tool_share=1.0,
                                        chart_shards="charts"))
    recipe = Recipe(stages=(stage,), charts=Charts(count=3, seed=2))
    commands = recipe_commands(recipe, tmp_path / "run")
    assert commands[0] == f"redgraph embedded render {tmp_path / 'run' / 'charts'} --count 3 --seed 2"
    assert f"--chart-shards {tmp_path / 'run' / 'charts'}" in commands[1]
    [manifest_] = run_recipe(tmp_path / "run", recipe)
    assert manifest_["config"]["chart_shards"] == str(tmp_path / "run" / "charts")
    assert sorted(p.name for p in (tmp_path / "run" / "charts").iterdir()) == ["charts-00000.tar", "shards.json"]
    assert run_recipe(tmp_path / "run", recipe)[0]["steps_done"] == 1  # drawn once, the stage done
    with pytest.raises(ConfigError, match=r"holds other charts than this recipe's \(4 of seed 2\)"):
        run_recipe(tmp_path / "run", Recipe(stages=(stage,), charts=Charts(count=4, seed=2)))
    with pytest.raises(ConfigError, match=r"stage 'charts' shows the recipe's charts .* add a \[charts\] table"):
        Recipe(stages=(stage,))
    with pytest.raises(ConfigError, match=r"\[charts\] must be a table of count"):
        recipe_from_dict({"charts": {"seed": 1}, "stages": [{"name": "a"}]})
