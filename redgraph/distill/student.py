"""SDRT's self-distillation: train the student's adapter on the weighted traces, base weights frozen.

Each kept trace teaches, through the adapter only (:mod:`redgraph.models.adapter`):

- ``answer``: image + question -> the trace's answer (what RED's image branch and plain answers use);
- ``rationale``: image + the style's rationale prompt (with the trace's analysis for a two-step
  style) -> the trace's rationale (what the local reasoner writes);
- ``analysis`` (two-step styles): image + the style's analysis prompt -> the trace's analysis;

and each item whose question the critic's experts answered teaches that answer (``answer``), as
:mod:`redgraph.distill.weights` says.

A step's examples are drawn with probability proportional to their trace's weight (the same
expected gradient as weighting each example's loss, with less noise), from a generator seeded by
``(seed, step)``. ``targets="gold"`` is the control: the same items, steps and batch size, on the
items' gold answers (answer examples only, every item alike), so it gets the same extra compute.

Example:
    >>> records, _ = read_traces(["runs/traces"])  # doctest: +SKIP
    >>> adapter, manifest = distill(lvlm, records, DistillConfig(steps=300), out_dir="runs/adapter")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch

from redgraph.distill.lesson import Lesson
from redgraph.distill.weights import WeightConfig, weigh_traces
from redgraph.errors import ConfigError, InputError, check_whole_number
from redgraph.models.adapter import Adapter, AdapterConfig, LoraAdapter, base_fingerprint, make_adapter

TARGETS = ("traces", "gold")
RUN_STATE = "training_state.pt"  # a stopped run's state in its output folder, removed when it finishes
SAVE_EVERY = 25  # steps between saves of that state


@dataclass(frozen=True)
class DistillConfig:
    """One distillation run.

    Attributes:
        steps, batch_size, learning_rate, warmup_steps: AdamW on the adapter (warm-up, then cosine).
        seed: seeds the adapter's initial values and the example draw.
        threads: CPU threads (results reproduce for a fixed count).
        adapter: where and how big the edits are.
        weighting: how traces are weighted and filtered.
        targets: ``"traces"`` (SDRT) or ``"gold"`` (the control).
        precision: ``"bfloat16"`` autocast, ``"float32"``, or ``"auto"`` (bfloat16 where the device runs it
            faster, see :func:`redgraph.lab.precision.auto_precision`; the manifest records which).
        keep: pictures whose answers the adapter must keep (``synthetic:SPLIT`` or a dataset): the
            first ``keep_limit`` of them, each with the base model's own answer, are *keep lessons*
            (:mod:`redgraph.distill.keep`) and ``keep_share`` of every batch is drawn from them; None:
            no keep lessons.
    """

    steps: int = 300
    batch_size: int = 32
    learning_rate: float = 3e-3
    warmup_steps: int = 30
    seed: int = 0
    threads: int = 2
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    weighting: WeightConfig = field(default_factory=WeightConfig)
    targets: Literal["traces", "gold"] = "traces"
    precision: str = "auto"
    keep: str | None = None
    keep_limit: int = 400
    keep_share: float = 0.25

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "threads", "warmup_steps", "keep_limit"):
            check_whole_number(name, getattr(self, name))
        if not (isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < 1):
            raise ConfigError(f"learning_rate must be between 0 and 1, got {self.learning_rate!r}")
        if self.targets not in TARGETS:
            raise ConfigError(f"targets must be one of {', '.join(TARGETS)}, got {self.targets!r}")
        if self.precision not in ("float32", "bfloat16", "auto"):
            raise ConfigError(f"precision must be float32, bfloat16 or auto, got {self.precision!r}")
        if isinstance(self.keep_share, bool) or not isinstance(self.keep_share, (int, float)) \
                or not 0 < self.keep_share < 1:
            raise ConfigError(f"keep_share must be a share above 0 and below 1 of each batch, got {self.keep_share!r}")
        if self.keep is not None and round(self.batch_size * self.keep_share) in (0, self.batch_size):
            raise ConfigError(f"keep_share {self.keep_share} of a batch of {self.batch_size} leaves no room for "
                              "keep lessons or for the others; choose a share between them")


def lessons(records: list[dict], config: DistillConfig) -> tuple[list[Lesson], dict]:
    """The examples the run draws from, and the weighting's summary."""
    from redgraph.agents.prompt_library import get_style
    from redgraph.models.prompts import PromptFormat

    question = PromptFormat().question
    if config.targets == "gold":
        seen: dict[str, Lesson] = {}
        for record in records:
            if record.get("gold_answer") and record["question_id"] not in seen:
                seen[record["question_id"]] = Lesson("answer", question.format(question=record["question"]),
                                                     record["gold_answer"], record["item"], 1.0)
        if not seen:
            raise InputError("the gold-answer control needs items with gold answers, and these traces have none")
        return list(seen.values()), {"items": len(seen), "targets": "gold"}
    weighting = weigh_traces(records, config.weighting)
    examples: list[Lesson] = []
    for record, weight in weighting.kept:
        style = get_style(record["style"])
        examples.append(Lesson("answer", question.format(question=record["question"]), record["answer"].strip(),
                               record["item"], weight))
        analysis = (record.get("analysis") or "").strip() if style.two_step else None
        if style.two_step:
            if not analysis:
                continue  # a two-step trace without its analysis teaches the answer only
            examples.append(Lesson("analysis", style.analysis_prompt(record["question"]), analysis, record["item"], weight))
        examples.append(Lesson("rationale", style.rationale_prompt(record["question"], analysis=analysis),
                               record["rationale"].strip(), record["item"], weight))
    for record, answer, weight in weighting.taught:  # the experts' answers (see redgraph.distill.weights)
        examples.append(Lesson("answer", question.format(question=record["question"]), answer, record["item"], weight))
    if not examples:
        raise InputError(f"no trace is left to learn from: {weighting.summary()['dropped']} of {len(records)} were "
                         "dropped; lower the weight threshold, or write more traces")
    return examples, {**weighting.summary(), "examples": len(examples), "targets": "traces"}


ProgressCallback = Callable[[int, float], None]


def distill(
    lvlm,
    records: list[dict],
    config: DistillConfig = DistillConfig(),
    *,
    out_dir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    on_progress: ProgressCallback | None = None,
    extra: dict | None = None,
    save_every: int = SAVE_EVERY,
) -> tuple[Adapter | LoraAdapter, dict]:
    """Train an adapter for ``lvlm`` (its weights stay as they are) on ``records``.

    The adapter is left attached to ``lvlm``'s model (``lvlm.adapter_path`` then names it, so traces
    of runs on ``lvlm`` say so); with ``out_dir`` it is also saved there with its manifest (settings,
    weighting counts, losses, time). ``extra`` goes into the manifest. With ``config.keep``, the
    base model (``lvlm`` before the adapter) first answers the keep pictures.

    With ``out_dir``, the run's state (the adapter, optimiser, schedule and losses) is saved there
    every ``save_every`` steps (0: never) as ``training_state.pt``, and a run started on a folder
    holding one goes on from it, to the adapter an uninterrupted run gives; the file is removed
    when the adapter is saved.

    Raises:
        ConfigError: ``lvlm`` already has an adapter, ``device`` is not available here, ``out_dir``
            holds a stopped run of other settings, examples or base weights; ``config.keep`` is refused.
        InputError: no trace survives the weighting.
    """
    from redgraph.lab.precision import auto_precision, check_device, training_process

    if getattr(lvlm, "adapter_path", None):
        raise ConfigError(f"{lvlm.name} already has an adapter ({lvlm.adapter_path}); distil from the base model")
    target = check_device(device)
    if config.precision == "auto":
        config = replace(config, precision=auto_precision(target))
    check_whole_number("save_every", save_every, minimum=0)
    examples, weighting = lessons(records, config)
    keep: list[Lesson] = []
    if config.keep is not None:
        from redgraph.distill.keep import keep_lessons

        keep = keep_lessons(lvlm, config.keep, config.keep_limit)
        if not keep:
            raise InputError(f"the base model answered none of keep {config.keep!r}'s pictures; choose another keep source")
        weighting = {**weighting, "keep_lessons": len(keep)}
    with training_process(config.threads, target):
        return _distill(lvlm, examples, weighting, config, out_dir, target, on_progress, extra or {}, save_every, keep)


def _examples_digest(examples: list[Lesson]) -> str:
    import hashlib

    text = json.dumps([[e.task, e.instruction, e.target, e.ref, e.weight] for e in examples], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _run_key(config: DistillConfig, examples: list[Lesson], fingerprint: str) -> dict:
    """What a stopped run must share with this one to be continued by it (``examples``: the keep
    lessons too, after the others)."""
    return {"config": json.loads(json.dumps(asdict(config))), "examples": _examples_digest(examples),
            "base": fingerprint}


def _distill(lvlm, examples: list[Lesson], weighting: dict, config: DistillConfig, out_dir, device: torch.device,
             on_progress: ProgressCallback | None, extra: dict, save_every: int = 0, keep: list[Lesson] = ()):
    from redgraph.lab.batches import batch_tensors
    from redgraph.lab.tasks import Example
    from redgraph.lab.losses import example_loss
    from redgraph.lab.train import warmup_cosine
    from redgraph.models.prompts import render

    model = lvlm.model
    fingerprint = base_fingerprint(model)
    was_training = model.training
    model.requires_grad_(False)
    model.eval()  # the base is frozen: no dropout either
    model.to(device)
    adapter = make_adapter(model, config.adapter, seed=config.seed)
    adapter.attach(model)
    adapter.train()
    parameters = [p for p in adapter.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, betas=(0.9, 0.98), weight_decay=0.0)

    scheduler = warmup_cosine(optimizer, config.warmup_steps, config.steps)
    images: dict[str, object] = {}

    def image(ref: dict):
        from redgraph.distill.items import item_image

        key = json.dumps(ref, sort_keys=True)
        if key not in images:
            images[key] = item_image(ref)
        return images[key]

    weights = [e.weight for e in examples]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bfloat16")
    losses: list[float] = []
    state_path = Path(out_dir) / RUN_STATE if out_dir is not None else None
    key = _run_key(config, examples + list(keep), fingerprint)
    kept = round(config.batch_size * config.keep_share) if keep else 0
    earlier_seconds = 0.0

    def resume() -> int:
        """Go on from a stopped run's state in ``out_dir``, if any; the first step to take."""
        nonlocal losses, earlier_seconds
        if state_path is None or not state_path.is_file():
            return 0
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=True)
            saved_key = json.loads(state["key"])
        except Exception as exc:  # a file cut short or not ours: say so rather than start over silently
            raise ConfigError(f"{os.fspath(state_path)!r} cannot be read as a stopped distillation run ({exc}); "
                              "remove it to start over") from None
        if saved_key != key:
            differing = ", ".join(name for name in key if saved_key.get(name) != key[name])
            raise ConfigError(f"{os.fspath(out_dir)!r} holds a stopped run of other {differing}; run the same command "
                              "on it to go on, or use a new output folder")
        adapter.load_state_dict(state["adapter"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        losses, earlier_seconds = list(state["losses"]), float(state["seconds"])
        return len(losses)

    def save_state() -> None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        partial = state_path.with_suffix(".partial")
        torch.save({"key": json.dumps(key), "adapter": adapter.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "losses": losses,
                    "seconds": earlier_seconds + time.perf_counter() - started}, partial)
        os.replace(partial, state_path)

    first = 0
    try:
        first = resume()
        started = time.perf_counter()
        for step in range(first, config.steps):
            rng = random.Random(f"redgraph-distill:{config.seed}:{step}")
            draw = rng.choices(examples, weights=weights, k=config.batch_size - kept) + rng.choices(keep, k=kept)
            batch = batch_tensors([Example(e.task, render(lvlm.processor, e.instruction, with_image=True), image(e.ref),
                                           e.target) for e in draw], lvlm.processor)
            batch = {k: v.to(device) for k, v in batch.items()}
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = example_loss(model, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            if state_path is not None and save_every and (step + 1) % save_every == 0 and step + 1 < config.steps:
                save_state()
            if on_progress is not None:
                on_progress(step + 1, losses[-1])
    except BaseException:
        adapter.detach()
        raise
    finally:
        model.train(was_training)
    seconds = earlier_seconds + time.perf_counter() - started
    adapter.eval()
    model.to("cpu")
    adapter.to("cpu")
    tail = losses[-20:]
    manifest = {
        "command": distill_command(config),
        "config": json.loads(json.dumps(asdict(config))),
        "weighting": weighting,
        "trainable_parameters": sum(p.numel() for p in parameters),
        "first_loss": losses[0], "final_loss_mean_last_20": sum(tail) / len(tail),
        "seconds": round(seconds, 1), "examples_per_second": round(config.steps * config.batch_size / seconds, 1),
        "device": str(device), **extra,
    }
    if first:
        manifest["resumed_at_step"] = first
    lvlm.adapter_path = "(trained in this process, not saved)"
    if out_dir is not None:
        adapter.save(out_dir, base_digest=fingerprint, extra={"manifest": manifest})
        state_path.unlink(missing_ok=True)
        manifest["size_bytes"] = sum(f.stat().st_size for f in Path(out_dir).iterdir() if f.is_file())
        lvlm.adapter_path = os.fspath(out_dir)
    return adapter, manifest


def distill_command(config: DistillConfig) -> str:
    """The ``redgraph distill train`` options that run ``config`` (after the trace folders)."""
    default = DistillConfig()
    # the precision always: the command line's default (auto) depends on the machine
    flags = [f"--steps {config.steps}", f"--seed {config.seed}", f"--precision {config.precision}"]
    for name in ("batch_size", "learning_rate", "warmup_steps", "threads"):
        value = getattr(config, name)
        if value != getattr(default, name):
            flags.append(f"--{name.replace('_', '-')} {value:g}" if isinstance(value, float) else
                         f"--{name.replace('_', '-')} {value}")
    adapter, base = config.adapter, default.adapter
    if adapter.layers != base.layers:
        flags.append("--layers " + (",".join(map(str, adapter.layers)) or "none"))
    if adapter.rank != base.rank:
        flags.append(f"--rank {adapter.rank}")
    if adapter.skip_layer != base.skip_layer:
        flags.append(f"--skip-layer {'none' if adapter.skip_layer is None else adapter.skip_layer}")
    if adapter.kind != base.kind:
        flags.append(f"--kind {adapter.kind}")
    if adapter.vision_layers:
        flags.append("--vision-layers " + ",".join(map(str, adapter.vision_layers)))
    weighting = config.weighting
    if not weighting.critic:
        flags.append("--no-critic")
    if not weighting.agreement:
        flags.append("--no-agreement")
    if weighting.style_weights == "uniform":
        flags.append("--uniform-styles")
    if weighting.threshold != WeightConfig().threshold:
        flags.append(f"--threshold {weighting.threshold:g}")
    if weighting.unsure == "drop":
        flags.append("--drop-unsure")
    if not weighting.experts:
        flags.append("--no-experts")
    if config.targets == "gold":
        flags.append("--control")
    if config.keep is not None:
        flags.append(f"--keep {config.keep} --keep-limit {config.keep_limit} --keep-share {config.keep_share:g}")
    return "redgraph distill train OUT TRACES " + " ".join(flags)
