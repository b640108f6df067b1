"""A training recipe: named stages of ``redgraph embedded train``, each starting from the previous
stage's weights, run by one command (``redgraph embedded recipe``).

A recipe is a TOML file::

    description = "what it makes"

    [defaults]                  # options every stage shares (a stage may override them)
    aux_weight = 10
    precision = "bfloat16"

    [[stages]]
    name = "base"               # the stage's folder is OUT/01-base
    steps = 8000
    stop_after = 4000           # stop the schedule here (optional)

    [[stages]]
    name = "relations"
    steps = 1200
    seed = 1
    task_weights = { rationale = 0, cot = 0 }
    category_weights = { relation_lr = 3 }

The options are ``redgraph embedded train``'s (``TrainConfig``'s fields), with the weights as
tables (or as the command line's ``"name=weight,..."`` text). Every stage after the first starts
from the previous one (``--init-from``, fresh optimiser and schedule); the first may name a base
with ``init_from``. ``threads``, the device and the data workers are the run's, not the recipe's.

A recipe whose stages show matplotlib's charts (``tool_share``) may draw them ahead once, into
``OUT/charts``, with a ``[charts]`` table (``count``, ``seed``); its stages then set
``chart_shards = "charts"``, which names that folder.

Running a recipe again into the same folder skips the stages already done and resumes the one
that was stopped (from its last save, every ``save_every`` steps), so a run can be stopped at any
time and ends with the weights an uninterrupted one gives.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from redgraph.errors import ConfigError, check_whole_number
from redgraph.lab.checkpoints import auto_rope_layout, differing_settings, train_command
from redgraph.lab.precision import auto_precision, check_device
from redgraph.lab.train import train
from redgraph.lab.train_config import (
    AUTO_LAYOUT,
    AUTO_PRECISION,
    ProgressCallback,
    TrainConfig,
    parse_category_weights,
    parse_task_weights,
)
from redgraph.models.embedded.files import MANIFEST_FILE

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

RECIPES_DIR = Path(__file__).parent / "recipes"
BUILT_IN = "embedded"  # the shipped model's recipe (recipes/embedded.toml)
# What a recipe may set: TrainConfig's fields but the run's own (threads) and the architecture's.
_OPTIONS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("threads", "dimensions"))
_STAGE_ONLY = ("name", "stop_after")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


@dataclass(frozen=True)
class Stage:
    """One ``redgraph embedded train`` run of a recipe. ``config.init_from`` is the first stage's
    base (or None); later stages' is set by :func:`run_recipe` to the previous stage's folder."""

    name: str
    config: TrainConfig
    stop_after: int | None = None

    @property
    def last_step(self) -> int:
        return self.config.steps if self.stop_after is None else self.stop_after

    @property
    def examples(self) -> int:
        return self.last_step * self.config.batch_size


CHARTS_FOLDER = "charts"  # OUT/charts: the recipe's chart shards, which stages name as chart_shards = "charts"


@dataclass(frozen=True)
class Charts:
    """The chart shards a recipe draws ahead (:func:`redgraph.lab.pictures.render_shards`)."""

    count: int
    seed: int = 0


@dataclass(frozen=True)
class Recipe:
    stages: tuple[Stage, ...]
    description: str = ""
    source: str = ""
    charts: Charts | None = None

    def __post_init__(self) -> None:
        if not self.stages:
            raise ConfigError(f"recipe {self.source}: it has no stages; add at least one [[stages]] table")
        names = [s.name for s in self.stages]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"recipe {self.source}: stage names must differ, {', '.join(repeated)} is repeated")
        for stage in self.stages:
            if stage.config.chart_shards == CHARTS_FOLDER and self.charts is None:
                raise ConfigError(f"recipe {self.source}: stage {stage.name!r} shows the recipe's charts "
                                  f"(chart_shards = {CHARTS_FOLDER!r}) but the recipe draws none; add a [charts] "
                                  "table with their count")
        for stage in self.stages[1:]:
            if stage.config.init_from is not None:
                raise ConfigError(f"recipe {self.source}: stage {stage.name!r} names init_from, but every stage "
                                  "after the first starts from the previous one; only the first may name a base")

    @property
    def examples(self) -> int:
        return sum(stage.examples for stage in self.stages)

    def folders(self, out_dir: str | Path) -> list[Path]:
        """Each stage's folder: OUT/01-NAME, OUT/02-NAME, ..."""
        return [Path(out_dir) / f"{i:02d}-{stage.name}" for i, stage in enumerate(self.stages, 1)]


def load_recipe(source: str | Path) -> Recipe:
    """A recipe from a TOML file, or the built-in one by name (``"embedded"``: the shipped model's)."""
    path = RECIPES_DIR / f"{BUILT_IN}.toml" if str(source) == BUILT_IN else Path(source)
    if not path.is_file():
        raise ConfigError(f"recipe {str(source)!r}: no such file; name a recipe TOML file, or {BUILT_IN!r} for the "
                          "shipped model's")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"recipe {path}: not valid TOML ({exc}); fix the file") from None
    return recipe_from_dict(data, source=str(path))


def recipe_from_dict(data: dict, source: str = "") -> Recipe:
    """A recipe from a TOML file's tables (see the module's docstring)."""
    unknown = sorted(set(data) - {"description", "defaults", "stages", "charts"})
    if unknown:
        raise ConfigError(f"recipe {source}: unknown key {unknown[0]!r}; a recipe has description, [defaults], "
                          "[charts] and [[stages]]")
    charts = None
    if "charts" in data:
        table = data["charts"]
        if not isinstance(table, dict) or set(table) - {"count", "seed"} or "count" not in table:
            raise ConfigError(f"recipe {source}: [charts] must be a table of count (and seed), got {table!r}")
        try:
            check_whole_number("charts count", table["count"])
            check_whole_number("charts seed", table.get("seed", 0), minimum=0)
        except ConfigError as exc:
            raise ConfigError(f"recipe {source}: {exc}") from None
        charts = Charts(count=table["count"], seed=table.get("seed", 0))
    defaults = data.get("defaults", {})
    stages = data.get("stages", [])
    if not isinstance(defaults, dict) or not isinstance(stages, list) or not all(isinstance(s, dict) for s in stages):
        raise ConfigError(f"recipe {source}: [defaults] must be a table and stages an array of [[stages]] tables")
    for key in ("name", "stop_after", "init_from"):
        if key in defaults:
            raise ConfigError(f"recipe {source}: {key} is a stage's own, not a default; set it in the [[stages]] table")
    built = tuple(_stage({**defaults, **stage}, i, source) for i, stage in enumerate(stages, 1))
    return Recipe(stages=built, description=str(data.get("description", "")), source=source, charts=charts)


def _stage(table: dict, index: int, source: str) -> Stage:
    where = f"recipe {source}, stage {index}"
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"{where}: name must be lower-case letters, digits, '-' or '_' (up to 40), got {name!r}")
    where = f"recipe {source}, stage {index} ({name})"
    unknown = sorted(set(table) - set(_OPTIONS) - set(_STAGE_ONLY))
    if unknown:
        raise ConfigError(f"{where}: unknown option {unknown[0]!r}; the options are {', '.join(_STAGE_ONLY + _OPTIONS)}"
                          " (threads, the device and workers are the run's: pass them to the command)")
    options = {k: v for k, v in table.items() if k in _OPTIONS}
    for key, parse in (("task_weights", parse_task_weights), ("category_weights", parse_category_weights)):
        if key in options:
            options[key] = _weights(options[key], parse, f"{where}: {key}")
    try:
        config = TrainConfig(**options)
        stop_after = table.get("stop_after")
        if stop_after is not None:
            check_whole_number("stop_after", stop_after)
            if stop_after > config.steps:
                raise ConfigError(f"stop_after ({stop_after}) is past the end of the schedule ({config.steps} steps)")
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return Stage(name=name, config=config, stop_after=stop_after)


def _weights(value, parse, where: str) -> tuple[float, ...]:
    if isinstance(value, str):
        text = value
    elif isinstance(value, dict):
        text = ",".join(f"{k}={v}" for k, v in value.items())
    else:
        raise ConfigError(f"{where} must be a table (name = weight) or 'name=weight,...' text, got {value!r}")
    try:
        return parse(text)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


StageCallback = Callable[[int, Stage, Path, str], None]  # index, stage, folder, "done" | "resumed" | "started"


def stage_configs(recipe: Recipe, out_dir: str | Path, threads: int = 2) -> list[TrainConfig]:
    """Each stage's config as it is run into ``out_dir``: the run's threads, and every stage after
    the first starting from the previous stage's folder."""
    bases = [recipe.stages[0].config.init_from] + [str(folder) for folder in recipe.folders(out_dir)[:-1]]
    charts = str(Path(out_dir) / CHARTS_FOLDER)
    return [dataclasses.replace(stage.config, threads=threads, init_from=base,
                                chart_shards=charts if stage.config.chart_shards == CHARTS_FOLDER else
                                stage.config.chart_shards)
            for stage, base in zip(recipe.stages, bases)]


def charts_command(recipe: Recipe, out_dir: str | Path) -> str | None:
    """The ``redgraph embedded render`` command that draws the recipe's charts, if it has any."""
    if recipe.charts is None:
        return None
    return (f"redgraph embedded render {Path(out_dir) / CHARTS_FOLDER} --count {recipe.charts.count} "
            f"--seed {recipe.charts.seed}")


def recipe_commands(recipe: Recipe, out_dir: str | Path, threads: int = 2) -> list[str]:
    """The ``redgraph embedded train`` command of each stage (what the recipe runs, one at a time)."""
    commands = [] if recipe.charts is None else [charts_command(recipe, out_dir)]
    for stage, folder, config in zip(recipe.stages, recipe.folders(out_dir), stage_configs(recipe, out_dir, threads)):
        command = train_command(config).replace(" OUT ", f" {folder} ", 1)
        commands.append(command + (f" --stop-after {stage.stop_after}" if stage.stop_after is not None else ""))
    return commands


def run_recipe(out_dir: str | Path, recipe: Recipe, *, threads: int = 2, device: str = "cpu", workers: int = 0,
               attention: str | None = None, save_every: int = 250, on_stage: StageCallback | None = None,
               on_progress: ProgressCallback | None = None) -> list[dict]:
    """Run ``recipe``'s stages into ``out_dir`` (stage folders OUT/01-NAME, ...); return each stage's
    manifest. Stages already done there are skipped, a stopped one is resumed, so re-running the
    same call after a stop (or a kill) ends with the weights of an uninterrupted run. A stage folder
    holding a run of other settings is refused, not overwritten."""
    check_device(device)
    if recipe.charts is not None:
        _draw_charts(recipe.charts, Path(out_dir) / CHARTS_FOLDER)
    manifests = []
    configs = stage_configs(recipe, out_dir, threads)
    for index, (stage, folder, config) in enumerate(zip(recipe.stages, recipe.folders(out_dir), configs), 1):
        if config.precision == AUTO_PRECISION:
            config = dataclasses.replace(config, precision=auto_precision(device, folder))
        if config.rope_layout == AUTO_LAYOUT:
            config = dataclasses.replace(config, rope_layout=auto_rope_layout(config, folder))
        saved = _saved_run(folder, config, index, stage)
        done = saved.get("steps_done", 0)
        if done >= stage.last_step:
            if on_stage is not None:
                on_stage(index, stage, folder, "done")
            manifests.append(saved)
            continue
        if on_stage is not None:
            on_stage(index, stage, folder, "resumed" if done else "started")
        _, manifest = train(folder, config, resume=done > 0, device=device, workers=workers, attention=attention,
                            save_every=save_every, stop_after=stage.stop_after, on_progress=on_progress)
        manifests.append(manifest)
    return manifests


def _draw_charts(charts: Charts, folder: Path) -> None:
    """Draw the recipe's charts into ``folder`` unless they are there; other charts there are refused."""
    from redgraph.lab.pictures import SHARDS_FILE, render_shards

    if (folder / SHARDS_FILE).is_file():
        try:
            saved = json.loads((folder / SHARDS_FILE).read_text(encoding="utf-8"))
            same = (saved["pictures"], saved["seed"]) == (charts.count, charts.seed)
        except (ValueError, KeyError, TypeError):
            same = False
        if not same:
            raise ConfigError(f"{folder} holds other charts than this recipe's ({charts.count} of seed {charts.seed}); "
                              "run the recipe into a new folder, or move that folder away")
        return
    render_shards(folder, charts.count, seed=charts.seed)


def _saved_run(folder: Path, config: TrainConfig, index: int, stage: Stage) -> dict:
    """The manifest of the run of ``config`` saved in ``folder`` ({}: none); a run of other settings there is refused."""
    path = folder / MANIFEST_FILE
    if not path.is_file():
        return {}
    try:
        saved = json.loads(path.read_text())
        saved["steps_done"] = done = int(saved["steps_done"])
        differing = differing_settings(config, saved["config"])
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{path} cannot be read as a training manifest; it is not stage {index} ({stage.name}) of "
                          "this recipe: run the recipe into a new folder, or move that folder away") from None
    if differing:
        raise ConfigError(f"{folder} holds a run with other settings ({', '.join(differing)}) than stage {index} "
                          f"({stage.name}) of this recipe; run the recipe into a new folder, or move that folder away")
    if done > stage.last_step:
        raise ConfigError(f"{folder} has trained {done} steps, past stage {index} ({stage.name})'s stop_after "
                          f"({stage.last_step}); run the recipe into a new folder, or move that folder away")
    return saved
