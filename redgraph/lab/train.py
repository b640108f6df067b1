"""Training the embedded model from scratch on CPU, reproducibly from a seed.

The data is an endless stream of fresh train-split items (never a validation or test scene), so
the model does not see any item twice. Loss: cross-entropy on the target tokens (and the
end-of-turn token), averaged per example, so short answers weigh as much as long rationales.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from redgraph.data.synthetic import make_item
from redgraph.errors import ConfigError, check_whole_number
from redgraph.lab.architecture import Dimensions, build_untrained
from redgraph.lab.scene_labels import VOCABULARY
from redgraph.lab.tasks import TASKS, Example, make_example


@dataclass(frozen=True)
class TrainConfig:
    """One training run. The shipped model used the defaults except ``steps`` (see its manifest)."""

    steps: int = 2000
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 300
    weight_decay: float = 0.01
    seed: int = 0
    threads: int = 2  # results are reproducible for a fixed thread count
    dimensions: Dimensions = Dimensions()
    # Weight of the auxiliary loss: a linear head reads the scene's facts from the mean image token
    # (see scene_labels.py); 0 trains on the language-model loss alone.
    aux_weight: float = 0.0
    # How often each task is drawn, in the order of TASKS (answer, rationale, cot, rationale_answer,
    # verify); equal weights draw uniformly, as the shipped model was trained.
    task_weights: tuple[float, ...] = (1.0,) * len(TASKS)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "threads"):
            check_whole_number(name, getattr(self, name))
        if not (isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < 1):
            raise ConfigError(f"learning_rate must be between 0 and 1, got {self.learning_rate!r}")
        if isinstance(self.aux_weight, bool) or not isinstance(self.aux_weight, (int, float)) or not 0 <= self.aux_weight < 100:
            raise ConfigError(f"aux_weight must be a number from 0 to 100, got {self.aux_weight!r}")
        weights = self.task_weights
        if (not isinstance(weights, (tuple, list)) or len(weights) != len(TASKS)
                or any(isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < math.inf for w in weights)
                or not any(weights)):
            raise ConfigError(f"task_weights must be {len(TASKS)} numbers of at least 0, not all 0 (one per task: "
                              f"{', '.join(TASKS)}), got {weights!r}")
        object.__setattr__(self, "task_weights", tuple(float(w) for w in weights))

    @property
    def uniform_tasks(self) -> bool:
        return len(set(self.task_weights)) == 1


def parse_task_weights(text: str) -> tuple[float, ...]:
    """``"verify=3,cot=0.5"`` -> weights in TASKS order; tasks not named keep weight 1."""
    weights = dict.fromkeys(TASKS, 1.0)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in weights:
            raise ConfigError(f"--task-weights: cannot read {part!r}; write TASK=WEIGHT pairs separated by commas, "
                              f"with TASK one of {', '.join(TASKS)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ConfigError(f"--task-weights: the weight of {name} must be a number, got {value.strip()!r}") from None
    return tuple(weights.values())


def format_task_weights(weights: tuple[float, ...]) -> str:
    return ",".join(f"{task}={weight:g}" for task, weight in zip(TASKS, weights))


ProgressCallback = Callable[[int, float], None]


def batch_tensors(examples: list[Example], processor) -> dict[str, torch.Tensor]:
    """Tokenise prompts (with their images) and targets into right-padded training tensors.

    ``labels`` is -100 everywhere except the target tokens and the closing end-of-turn token.
    """
    tokenizer = processor.tokenizer
    with_image = [e for e in examples if e.image is not None]
    rows: list[list[int]] = []
    targets: list[int] = []
    pixel = {}
    if with_image:
        encoded = processor(text=[e.prompt for e in with_image], images=[e.image for e in with_image],
                            return_tensors="pt", padding=True)
        pixel = {"pixel_values": encoded["pixel_values"], "image_grid_thw": encoded["image_grid_thw"]}
        image_rows = iter(
            ids[mask.bool()].tolist() for ids, mask in zip(encoded["input_ids"], encoded["attention_mask"])
        )
    for example in examples:
        if example.image is not None:
            prompt_ids = next(image_rows)
        else:
            prompt_ids = tokenizer(example.prompt, add_special_tokens=False)["input_ids"]
        target_ids = tokenizer(example.target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(prompt_ids + target_ids)
        targets.append(len(target_ids))
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (row, n_target) in enumerate(zip(rows, targets)):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
        labels[i, len(row) - n_target : len(row)] = torch.tensor(row[-n_target:])
    if pixel:
        # Qwen2-VL's 3-D positions need to know which tokens are image tokens (1) and which text (0).
        pixel["mm_token_type_ids"] = (input_ids == processor.image_token_id).long()
        targets = torch.zeros((len(with_image), len(VOCABULARY)))
        for row, example in enumerate(with_image):
            targets[row, list(example.scene_labels)] = 1.0
        pixel["scene_targets"] = targets
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels, **pixel}


def example_loss(model, batch: dict[str, torch.Tensor], aux_head: torch.nn.Module | None = None,
                 aux_weight: float = 0.0) -> torch.Tensor:
    """Mean over examples of each example's mean target-token cross-entropy; with ``aux_head``, plus
    ``aux_weight`` x the binary cross-entropy of the scene facts read from each image's mean token."""
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "scene_targets")}
    captured: list[torch.Tensor] = []
    hook = None
    if aux_head is not None and aux_weight > 0 and "scene_targets" in batch:
        def keep(module, args, output):
            merged = getattr(output, "pooler_output", None)
            captured.append(merged if merged is not None else output)

        hook = model.model.visual.register_forward_hook(keep)
    try:
        logits = model(**inputs).logits[:, :-1]  # (B, T-1, V): position t predicts token t+1
    finally:
        if hook is not None:
            hook.remove()
    shifted = labels[:, 1:]
    per_token = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), shifted.reshape(-1), ignore_index=-100, reduction="none"
    ).view(shifted.shape)
    mask = (shifted != -100).float()
    loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
    if captured:
        targets = batch["scene_targets"]
        tokens = captured[0].reshape(targets.shape[0], -1, captured[0].shape[-1])  # (images, tokens, width)
        logits_aux = aux_head(tokens.mean(1))
        loss = loss + aux_weight * torch.nn.functional.binary_cross_entropy_with_logits(logits_aux, targets)
    return loss


def sample_batch(step: int, config: TrainConfig, processor, rng: random.Random) -> list[Example]:
    start = step * config.batch_size
    items = [make_item("train", start + i, seed=config.seed) for i in range(config.batch_size)]
    if config.uniform_tasks:  # the shipped model's draw, kept so that its manifest command reproduces it
        tasks = [rng.choice(TASKS) for _ in items]
    else:
        tasks = rng.choices(TASKS, weights=config.task_weights, k=len(items))
    return [make_example(item, task, processor, rng) for item, task in zip(items, tasks)]


def train(
    out_dir: str | os.PathLike[str] | None,
    config: TrainConfig = TrainConfig(),
    *,
    on_progress: ProgressCallback | None = None,
    save_every: int = 250,
    resume: bool = False,
):
    """Train from scratch and save the checkpoint (with ``redgraph_manifest.json``) to ``out_dir``.

    Every save also writes ``training_state.pt`` (weights in training form, optimiser, schedule,
    task-choice RNG, the auxiliary head, the losses so far), so a stopped run can be resumed: it then ends with exactly
    the weights an uninterrupted run of the same settings (and thread count) gives.

    Args:
        out_dir: where to save; None keeps the model in memory only.
        config: the run's settings.
        on_progress: called after every step with ``(step, loss)``.
        save_every: also save every this many steps, so a stopped run keeps its progress.
        resume: continue the run saved in ``out_dir`` (which must have the same settings).

    Returns:
        ``(lvlm, manifest)``: the trained model (in eval mode) and the run's record.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        # Seeding happens inside; the caller's global RNG state is left as it was.
        with torch.random.fork_rng(devices=[]):
            return _train(out_dir, config, on_progress, save_every, resume)
    finally:
        torch.set_num_threads(threads)


def _train(out_dir, config: TrainConfig, on_progress: ProgressCallback | None, save_every: int, resume: bool):
    from redgraph.models.loading import LVLM

    model, processor = build_untrained(config.dimensions, seed=config.seed)
    model.train()
    aux_head = None
    parameters = list(model.parameters())
    if config.aux_weight > 0:
        aux_head = torch.nn.Linear(config.dimensions.hidden, len(VOCABULARY))  # merged image token width
        parameters += list(aux_head.parameters())
    decay = [p for p in parameters if p.ndim >= 2]
    no_decay = [p for p in parameters if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate, betas=(0.9, 0.98),
    )

    def schedule(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    rng = random.Random(f"redgraph-train-tasks:{config.seed}")
    losses: list[float] = []
    started = time.perf_counter()
    lvlm = LVLM(model=model, processor=processor, name="redgraph-embedded")
    first = 0
    if resume:
        first = _restore(out_dir, config, model, optimizer, scheduler, rng, aux_head, losses)

    def state(done: int) -> dict:
        return {"config": asdict(config), "steps_done": done, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "task_rng": rng.getstate(),
                "aux_head": aux_head.state_dict() if aux_head is not None else None, "losses": list(losses)}

    for step in range(first, config.steps):
        batch = batch_tensors(sample_batch(step, config, processor, rng), processor)
        loss = example_loss(model, batch, aux_head, config.aux_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if on_progress is not None:
            on_progress(step + 1, losses[-1])
        if out_dir is not None and (step + 1) % save_every == 0 and step + 1 < config.steps:
            _save(lvlm, out_dir, _manifest(config, losses, started, partial=True), state(step + 1))
    model.eval()
    manifest = _manifest(config, losses, started, partial=False)
    if out_dir is not None:
        _save(lvlm, out_dir, manifest, state(config.steps))
    return lvlm, manifest


TRAINING_STATE = "training_state.pt"


def _restore(out_dir, config: TrainConfig, model, optimizer, scheduler, rng: random.Random, aux_head,
             losses: list[float]) -> int:
    """Load a saved run's weights and training state into the fresh objects; return the steps done."""
    if out_dir is None or not (Path(out_dir) / TRAINING_STATE).exists():
        raise ConfigError(f"nothing to resume in {out_dir}: no {TRAINING_STATE} (a run saves one every few hundred "
                          "steps); train without --resume to start")
    saved = torch.load(Path(out_dir) / TRAINING_STATE, weights_only=False)
    mine = json.loads(json.dumps(asdict(config)))
    theirs = json.loads(json.dumps(saved["config"]))
    if mine != theirs:
        differing = sorted(k for k in mine if mine[k] != theirs.get(k))
        raise ConfigError(f"the run in {out_dir} has other settings ({', '.join(differing)}); resume it with the "
                          "same settings, or train into a new folder")
    model.load_state_dict(saved["model"], strict=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    rng.setstate(saved["task_rng"])
    if aux_head is not None:
        aux_head.load_state_dict(saved["aux_head"])
    losses.extend(saved["losses"])
    return int(saved["steps_done"])


def _manifest(config: TrainConfig, losses: list[float], started: float, *, partial: bool) -> dict:
    tail = losses[-50:]
    return {
        "command": f"redgraph embedded train OUT --steps {config.steps} --seed {config.seed}"
                   + (f" --aux-weight {config.aux_weight:g}" if config.aux_weight else "")
                   + ("" if config.uniform_tasks else f" --task-weights {format_task_weights(config.task_weights)}"),
        "config": asdict(config),
        "steps_done": len(losses),
        "finished": not partial,
        "first_loss": losses[0] if losses else None,
        "final_loss_mean_last_50": sum(tail) / len(tail) if tail else None,
        "seconds": round(time.perf_counter() - started, 1),
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {config.threads} threads",
    }


def _save(lvlm, out_dir, manifest: dict, training_state: dict) -> None:
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    lvlm.save(path)
    torch.save(training_state, path / TRAINING_STATE)
    (path / "redgraph_manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
