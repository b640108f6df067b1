"""A run's files: the base it starts from (``init_from``), its training state (save, restore,
resume), its manifest (the command that reproduces it, the versions, the figures), and the
settings a resumed run keeps."""

from __future__ import annotations

import json
import os
import pickle
import platform
import random
import shlex
from dataclasses import asdict
from pathlib import Path

import torch

from redgraph.data.files import write_file
from redgraph.errors import ConfigError
from redgraph.lab.architecture import ROPE_LAYOUTS, mrope_section
from redgraph.lab.train_config import (
    EMBEDDED_BASE,
    LEGACY_SETTINGS,
    TrainConfig,
    format_category_weights,
    format_task_weights,
)
from redgraph.models.embedded.files import MANIFEST_FILE

TRAINING_STATE = "training_state.pt"
KEPT_STEPS = "steps"  # keep_every's models: OUT/steps/STEP


def init_from_base(config: TrainConfig, model, processor) -> dict:
    """Copy the weights of ``config.init_from`` into ``model``; return what the manifest records of the base."""
    import hashlib

    from redgraph.models.embedded import manifest
    from redgraph.models.loading import load_embedded

    folder = base_folder(config.init_from)
    base = load_embedded(folder)
    theirs = getattr(base.model.config, "redgraph_dimensions", None)
    mine = asdict(config.dimensions)
    if theirs != mine:
        differing = sorted(k for k in mine if theirs is None or theirs.get(k) != mine[k])
        raise ConfigError(f"init_from {config.init_from!r}: that checkpoint has other dimensions "
                          f"({', '.join(differing) if theirs else 'none recorded: not trained by redgraph'}); "
                          "start from a checkpoint of this run's dimensions, or train without --init-from")
    if base.processor.tokenizer.get_vocab() != processor.tokenizer.get_vocab():
        raise ConfigError(f"init_from {config.init_from!r}: that checkpoint's tokenizer is not the one this "
                          "redgraph builds; start from a checkpoint trained by this version, or train without --init-from")
    model.load_state_dict(base.model.state_dict(), strict=True)
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    record = manifest(folder)
    return {"path": config.init_from, "model_sha256": digest, "command": record.get("command"),
            "examples_seen": record.get("examples_seen"), "base": record.get("base")}


def base_folder(init_from: str) -> Path:
    """The checkpoint folder ``init_from`` names (``EMBEDDED_BASE``: the shipped model's)."""
    from redgraph.models.embedded import EMBEDDED_DIR

    folder = EMBEDDED_DIR if init_from == EMBEDDED_BASE else Path(init_from)
    if not folder.is_dir():
        raise ConfigError(f"init_from {init_from!r}: no such folder; name a checkpoint folder (one that "
                          f"`redgraph embedded train` wrote) or {EMBEDDED_BASE!r} for the shipped model")
    return folder


def differing_settings(config: TrainConfig, saved: dict) -> list[str]:
    """The settings in which a saved run's config (as its training state or manifest records it)
    differs from ``config``; a setting that did not exist when it was saved counts as ``LEGACY_SETTINGS``'s."""
    mine = json.loads(json.dumps(asdict(config)))
    theirs = {**LEGACY_SETTINGS, **json.loads(json.dumps(saved))}
    return sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))


def restore_run(out_dir, config: TrainConfig, model, optimizer, scheduler, rng: random.Random, heads,
             losses: list[float], run: dict) -> int:
    """Load a saved run's weights and training state into the fresh objects; return the steps done."""
    if out_dir is None or not (Path(out_dir) / TRAINING_STATE).exists():
        raise ConfigError(f"nothing to resume in {out_dir}: no {TRAINING_STATE} (a run saves one every few hundred "
                          "steps); train without --resume to start")
    try:
        saved = torch.load(Path(out_dir) / TRAINING_STATE, weights_only=False, map_location="cpu")
    except (RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise ConfigError(f"{Path(out_dir) / TRAINING_STATE} cannot be read ({exc}), so the run in {out_dir} cannot "
                          "be resumed; train into a new folder") from None
    differing = differing_settings(config, saved["config"])
    if differing:
        raise ConfigError(f"the run in {out_dir} has other settings ({', '.join(differing)}); resume it with the "
                          "same settings, or train into a new folder")
    model.load_state_dict(saved["model"], strict=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    rng.setstate(saved["task_rng"])
    if heads is not None and heads.scene is not None:
        heads.scene.load_state_dict(saved["aux_head"])
    if heads is not None and heads.cell is not None:
        heads.cell.load_state_dict(saved["cell_head"])
    if heads is not None and heads.position is not None:
        heads.position.load_state_dict(saved["position_head"])
    losses.extend(saved["losses"])
    run["seconds"] = float(saved.get("seconds", 0.0))
    run["base"] = saved.get("base")
    return int(saved["steps_done"])


def train_command(config: TrainConfig) -> str:
    """The ``redgraph embedded train`` command line that runs ``config``."""
    default = TrainConfig()
    # the precision and rope layout always: their command-line default (auto) depends on the machine and the base
    flags = [f"--steps {config.steps}", f"--seed {config.seed}", f"--precision {config.precision}",
             f"--rope-layout {config.rope_layout}"]
    for name in ("batch_size", "learning_rate", "warmup_steps", "threads", "data_stream", "accumulate"):
        value = getattr(config, name)
        if value != getattr(default, name):
            flags.append(f"--{name.replace('_', '-')} {value:g}" if isinstance(value, float) else
                         f"--{name.replace('_', '-')} {value}")
    if config.aux_weight:
        flags.append(f"--aux-weight {config.aux_weight:g}")
    if config.cell_weight:
        flags.append(f"--cell-weight {config.cell_weight:g}")
    if config.position_weight:
        flags.append(f"--position-weight {config.position_weight:g}")
    if not config.uniform_tasks:
        flags.append(f"--task-weights {format_task_weights(config.task_weights)}")
    if config.init_from is not None:
        flags.append(f"--init-from {shlex.quote(config.init_from)}")
    if config.freeze_vision:
        flags.append("--freeze-vision")
    if config.copy_prompt_weight:
        flags.append(f"--copy-prompt-weight {config.copy_prompt_weight:g}")
    if config.copy_short_share:
        flags.append(f"--copy-short-share {config.copy_short_share:g}")
    if config.category_weight_map is not None:
        flags.append(f"--category-weights {format_category_weights(config.category_weights)}")
    if config.tool_share:
        flags.append(f"--tool-share {config.tool_share:g}")
    if config.augment:
        flags.append(f"--augment {config.augment:g}")
    if config.chart_shards is not None:
        flags.append(f"--chart-shards {shlex.quote(config.chart_shards)}")
    if config.image_side != default.image_side:
        flags.append(f"--image-side {config.image_side}")
    if config.tool_cells:
        flags.append("--tool-cells")
    if config.cell_head_init != default.cell_head_init:
        flags.append(f"--cell-head-init {config.cell_head_init}")
    if config.vocabulary != default.vocabulary:
        flags.append(f"--vocabulary {config.vocabulary}")
    if config.standard_share:
        flags.append(f"--standard-share {config.standard_share:g}")
    return "redgraph embedded train OUT " + " ".join(flags)


def run_manifest(config: TrainConfig, losses: list[float], seconds: float, run: dict, *, partial: bool) -> dict:
    tail = losses[-50:]
    examples = len(losses) * config.batch_size
    return {
        "command": train_command(config),
        "config": asdict(config),
        "steps_done": len(losses),
        "examples_seen": examples,
        "finished": not partial,
        "first_loss": losses[0] if losses else None,
        "final_loss_mean_last_50": sum(tail) / len(tail) if tail else None,
        "seconds": round(seconds, 1),
        "examples_per_second": round(examples / seconds, 1) if seconds > 0 else None,
        "device": run["device"],
        "dtype": "bfloat16 autocast, float32 weights" if config.precision == "bfloat16" else "float32",
        "data_workers": run["workers"],
        "attention": run["attention"],
        "torch": torch.__version__,
        "versions": versions(),
        "machine": f"{platform.machine()}, {config.threads} threads"
                   + (f", {torch.cuda.get_device_name(run['device'])}" if run["device"].startswith("cuda") else ""),
        **({"base": run["base"]} if run.get("base") else {}),
    }


def versions() -> dict[str, str]:
    """Versions of what decides a run's numbers (a run reproduces only with the same ones)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("torch", "transformers", "tokenizers", "pillow", "numpy", "redgraph"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def save_run(lvlm, out_dir, manifest: dict, training_state: dict) -> None:
    """Save the weights, then the training state, then the manifest, each of the last two by a rename,
    so that a run killed mid-save leaves the previous save's state and manifest whole (a resumed run
    restores from the state; the weights are rewritten at the next save)."""
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    lvlm.save(path)
    partial = path / (TRAINING_STATE + ".partial")
    torch.save(training_state, partial)
    os.replace(partial, path / TRAINING_STATE)
    write_manifest(path, manifest)


def write_manifest(folder: Path, manifest: dict) -> None:
    write_file(folder / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n", what="training manifest")



def resumed_setting(out_dir: str | os.PathLike[str] | None, name: str, choices: tuple[str, ...]) -> str | None:
    """The setting ``name`` of the run saved in ``out_dir`` (a run saved before it existed: ``LEGACY_SETTINGS``'s),
    or None where there is no saved run or its value is none of ``choices``."""
    from redgraph.models.embedded import manifest

    if out_dir is None:
        return None
    record = manifest(out_dir)
    if not record:
        return None
    saved = record.get("config", {}).get(name, LEGACY_SETTINGS[name])
    return saved if saved in choices else None



def auto_rope_layout(config: TrainConfig, out_dir: str | os.PathLike[str] | None = None) -> str:
    """The rope layout ``--rope-layout auto`` trains with: a resumed run's own (``out_dir`` holds
    one), else that of ``config.init_from``'s checkpoint, else blocks (Qwen2-VL's own), so that a run
    never changes its base's layout unless told to."""
    saved = resumed_setting(out_dir, "rope_layout", ROPE_LAYOUTS)
    if saved is not None:
        return saved
    if config.init_from is None:
        return "blocks"
    folder = base_folder(config.init_from)
    try:
        text = json.loads((folder / "config.json").read_text())["text_config"]
        section = text["rope_parameters"]["mrope_section"]
        head_dim = text["hidden_size"] // text["num_attention_heads"]
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        raise ConfigError(f"init_from {config.init_from!r}: its config.json does not say its rope layout; "
                          f"name one with --rope-layout ({', '.join(ROPE_LAYOUTS)})") from None
    for layout in ROPE_LAYOUTS:
        if mrope_section(head_dim, layout) == section:
            return layout
    raise ConfigError(f"init_from {config.init_from!r}: its mrope_section {section} is none of the layouts "
                      f"{', '.join(ROPE_LAYOUTS)}; name the one to train with --rope-layout")

