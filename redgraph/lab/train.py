"""Training the embedded model from scratch, on CPU or a GPU, reproducibly from a seed.

The data is an endless stream of fresh train-split items (never a validation or test scene), so
the model does not see any item twice; data workers make the batches (see :mod:`.batches`). Loss:
cross-entropy on the target tokens (and the end-of-turn token), averaged per example, so short
answers weigh as much as long rationales. Weights and optimiser stay float32; with
``precision="bfloat16"`` the forward and backward run under bf16 autocast; ``"auto"`` (the default)
takes bfloat16 only where the device runs it faster than float32.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import pickle
import platform
import random
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from redgraph.data.files import write_file
from redgraph.data.synthetic import ALL_CATEGORIES
from redgraph.errors import ConfigError, check_whole_number
from redgraph.lab.architecture import GRID, ROPE_LAYOUTS, Dimensions, build_untrained, mrope_section
from redgraph.lab.batches import (
    HOST_ONLY,
    STREAMS,
    StepBatches,
    micro_batches,
    one_thread_per_worker,
    rope_index,
    step_examples,
)
from redgraph.lab.scene_labels import CELL_VOCABULARY, VOCABULARY
from redgraph.lab.tasks import TASKS, Example
from redgraph.models.embedded.files import MANIFEST_FILE

PRECISIONS = ("float32", "bfloat16")
AUTO_PRECISION = "auto"  # bfloat16 where the device runs it faster than float32, else float32
AUTO_LAYOUT = "auto"  # the rope layout of the run's base (init_from, or a resumed run's own), else blocks
ATTENTIONS = ("eager", "sdpa")
# What a run saved before these settings existed was trained with.
_LEGACY = {"precision": "float32", "data_stream": 1, "accumulate": 1, "cell_weight": 0.0, "init_from": None,
           "position_weight": 0.0, "rope_layout": "blocks", "category_weights": [1.0] * len(ALL_CATEGORIES)}
EMBEDDED_BASE = "embedded"  # init_from's name for the model shipped in the package


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
    # Weight of the cell loss: a linear head reads each image token's own square's facts from it.
    cell_weight: float = 0.0
    # Weight of the position loss: a linear head reads each image token's own row and column of the
    # grid from it (the language model's M-RoPE barely tells image tokens apart by place; see
    # benchmarks/vision_probe.py), so left of / above can be read from the tokens.
    position_weight: float = 0.0
    # How often each task is drawn, in the order of TASKS (answer, rationale, cot, rationale_answer,
    # verify); equal weights draw uniformly, as the shipped model was trained.
    task_weights: tuple[float, ...] = (1.0,) * len(TASKS)
    # bfloat16: forward and backward under bf16 autocast (weights and optimiser stay float32);
    # auto: bfloat16 where the training device runs it faster than float32, decided by train()
    # (auto_precision) and recorded resolved.
    precision: str = "auto"
    # 2: each example from its own seed (the same stream for any worker count); 1: the shipped
    # model's in-order draw, made in-process only.
    data_stream: int = 2
    # Micro-batches per step, examples grouped by length (less padding); the same loss up to rounding.
    accumulate: int = 1
    # Start from this checkpoint's weights (a folder of the same dimensions, or "embedded": the shipped
    # model) instead of random ones; optimiser, schedule and the training-only heads start fresh.
    init_from: str | None = None
    # How the rotary frequencies are shared among time, height and width (ROPE_LAYOUTS in
    # architecture.py): "blocks", Qwen2-VL's own, or "interleaved". It has no weights, so --init-from
    # may start a run of either layout from a checkpoint of the other; auto keeps the base's (blocks
    # from scratch), decided by train() (auto_rope_layout) and recorded resolved.
    rope_layout: str = AUTO_LAYOUT
    # How often each question category is asked, relative to the others of its scene kind, in the
    # order of ALL_CATEGORIES (a kind whose categories all weigh 0 is not drawn); equal weights give
    # the generator's own items (the shipped model's stages 1-4; stages 5 and 6 weighed them).
    category_weights: tuple[float, ...] = (1.0,) * len(ALL_CATEGORIES)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "threads", "accumulate", "warmup_steps"):
            check_whole_number(name, getattr(self, name))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be a whole number, got {self.seed!r}")
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float)) \
                or not 0 <= self.weight_decay < 1:
            raise ConfigError(f"weight_decay must be a number from 0 to 1, got {self.weight_decay!r}")
        if self.precision not in PRECISIONS + (AUTO_PRECISION,):
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS + (AUTO_PRECISION,))}, "
                              f"got {self.precision!r}")
        if isinstance(self.data_stream, bool) or self.data_stream not in STREAMS:
            raise ConfigError(f"data_stream must be 1 (the shipped model's) or 2, got {self.data_stream!r}")
        if self.accumulate > self.batch_size:
            raise ConfigError(f"accumulate ({self.accumulate}) cannot exceed batch_size ({self.batch_size}): "
                              "each micro-batch needs at least one example")
        if not (isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < 1):
            raise ConfigError(f"learning_rate must be between 0 and 1, got {self.learning_rate!r}")
        for name in ("aux_weight", "cell_weight", "position_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 100:
                raise ConfigError(f"{name} must be a number from 0 to 100, got {value!r}")
        for name, names, each in (("task_weights", TASKS, "task"), ("category_weights", ALL_CATEGORIES, "category")):
            weights = getattr(self, name)
            if (not isinstance(weights, (tuple, list)) or len(weights) != len(names)
                    or any(isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < math.inf
                           for w in weights)
                    or not any(weights)):
                raise ConfigError(f"{name} must be {len(names)} numbers of at least 0, not all 0 (one per {each}: "
                                  f"{', '.join(names)}), got {weights!r}")
            object.__setattr__(self, name, tuple(float(w) for w in weights))
        if self.rope_layout not in ROPE_LAYOUTS + (AUTO_LAYOUT,):
            raise ConfigError(f"rope_layout must be one of {', '.join(ROPE_LAYOUTS + (AUTO_LAYOUT,))}, "
                              f"got {self.rope_layout!r}")
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from.strip()):
            raise ConfigError(f"init_from must be a checkpoint folder or {EMBEDDED_BASE!r}, got {self.init_from!r}")

    @property
    def uniform_tasks(self) -> bool:
        return len(set(self.task_weights)) == 1

    @property
    def category_weight_map(self) -> dict[str, float] | None:
        """The category weights by name, or None where they are equal (the generator's own items)."""
        if len(set(self.category_weights)) == 1:
            return None
        return dict(zip(ALL_CATEGORIES, self.category_weights))


def parse_task_weights(text: str) -> tuple[float, ...]:
    """``"verify=3,cot=0.5"`` -> weights in TASKS order; tasks not named keep weight 1."""
    return _parse_weights(text, TASKS, "--task-weights", "TASK")


def parse_category_weights(text: str) -> tuple[float, ...]:
    """``"relation_lr=3,field=0"`` -> weights in ALL_CATEGORIES order; categories not named keep weight 1."""
    return _parse_weights(text, ALL_CATEGORIES, "--category-weights", "CATEGORY")


def _parse_weights(text: str, names: tuple[str, ...], option: str, what: str) -> tuple[float, ...]:
    weights = dict.fromkeys(names, 1.0)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in weights:
            raise ConfigError(f"{option}: cannot read {part!r}; write {what}=WEIGHT pairs separated by commas, "
                              f"with {what} one of {', '.join(names)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ConfigError(f"{option}: the weight of {name} must be a number, got {value.strip()!r}") from None
    return tuple(weights.values())


def format_task_weights(weights: tuple[float, ...]) -> str:
    return ",".join(f"{task}={weight:g}" for task, weight in zip(TASKS, weights))


def format_category_weights(weights: tuple[float, ...]) -> str:
    """The categories whose weight is not 1 (those not named weigh 1)."""
    return ",".join(f"{name}={weight:g}" for name, weight in zip(ALL_CATEGORIES, weights) if weight != 1.0)


ProgressCallback = Callable[[int, float], None]


class VisionHeads(torch.nn.Module):
    """Training-only linear heads on the merged image tokens, dropped after training (the saved model
    is a plain Qwen2-VL):

    - ``scene`` (``aux_weight``): the scene's facts (``VOCABULARY``) from the mean image token;
    - ``cell`` (``cell_weight``): each token's own square's facts (``CELL_VOCABULARY``) from that
      token: where each colour and object is, where each bar ends, which characters are written
      where. Its loss is summed over the facts and averaged over the cells.
    - ``position`` (``position_weight``): each token's own row and column of the grid of merged
      tokens (``GRID`` x ``GRID``), from that token: the sum of the two cross-entropies, averaged
      over the tokens. It needs no labels: a token's place is its index.
    """

    def __init__(self, width: int, aux_weight: float, cell_weight: float, position_weight: float = 0.0) -> None:
        super().__init__()
        self.aux_weight, self.cell_weight, self.position_weight = aux_weight, cell_weight, position_weight
        self.scene = torch.nn.Linear(width, len(VOCABULARY)) if aux_weight > 0 else None
        self.cell = torch.nn.Linear(width, len(CELL_VOCABULARY)) if cell_weight > 0 else None
        self.position = torch.nn.Linear(width, 2 * GRID) if position_weight > 0 else None

    def loss(self, tokens: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``tokens``: (images, tokens per image, width), the merged vision output of ``batch``."""
        loss = torch.zeros((), device=tokens.device)
        if self.scene is not None:
            logits = self.scene(tokens.mean(1)).float()
            loss = loss + self.aux_weight * torch.nn.functional.binary_cross_entropy_with_logits(
                logits, batch["scene_targets"])
        if self.cell is not None:
            logits = self.cell(tokens).float()
            per_fact = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, batch["cell_targets"], reduction="none")  # (images, cells, facts)
            loss = loss + self.cell_weight * per_fact.sum(-1).mean()
        if self.position is not None:
            images, count, _ = tokens.shape
            if count != GRID * GRID:
                raise ValueError(f"the position head expects {GRID * GRID} tokens per image, got {count}")
            logits = self.position(tokens).float().reshape(images * count, 2, GRID)
            place = torch.arange(count, device=tokens.device).repeat(images)
            rows = torch.nn.functional.cross_entropy(logits[:, 0], place // GRID)
            columns = torch.nn.functional.cross_entropy(logits[:, 1], place % GRID)
            loss = loss + self.position_weight * (rows + columns)
        return loss


def example_loss(model, batch: dict[str, torch.Tensor], heads: VisionHeads | None = None, *,
                 shares: tuple[float, float] = (1.0, 1.0)) -> torch.Tensor:
    """Mean over examples of each example's mean target-token cross-entropy; with ``heads``, plus
    their losses on the batch's images (see :class:`VisionHeads`).

    ``shares``: this micro-batch's share of its step's examples and of its images; the step's loss
    is the sum of its micro-batches' losses.
    """
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "scene_targets", "cell_targets")}
    captured: list[torch.Tensor] = []
    hook = None
    if heads is not None and "scene_targets" in batch:  # any batch with images has them
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
    loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean() * shares[0]
    if captured:
        images = batch["scene_targets"].shape[0]
        tokens = captured[0].reshape(images, -1, captured[0].shape[-1])  # (images, tokens, width)
        loss = loss + heads.loss(tokens, batch) * shares[1]
    return loss


def sample_batch(step: int, config: TrainConfig, processor, rng: random.Random | None = None) -> list[Example]:
    """The examples of step ``step`` (``rng``: stream 1's run-wide task generator)."""
    return step_examples(step, config, processor, rng)


def train(
    out_dir: str | os.PathLike[str] | None,
    config: TrainConfig = TrainConfig(),
    *,
    on_progress: ProgressCallback | None = None,
    save_every: int = 250,
    resume: bool = False,
    device: str | torch.device = "cpu",
    workers: int = 0,
    attention: str | None = None,
    stop_after: int | None = None,
    keep_every: int | None = None,
):
    """Train from scratch and save the checkpoint (with its manifest, ``MANIFEST_FILE``) to ``out_dir``.

    Every save also writes ``training_state.pt`` (weights in training form, optimiser, schedule,
    task-choice RNG, the auxiliary head, the losses so far), so a stopped run can be resumed: it then ends with exactly
    the weights an uninterrupted run of the same settings (and thread count) gives.

    Args:
        out_dir: where to save; None keeps the model in memory only.
        config: the run's settings.
        on_progress: called after every step with ``(step, loss)``.
        save_every: also save every this many steps, so a stopped run keeps its progress.
        resume: continue the run saved in ``out_dir`` (which must have the same settings).
        device: ``"cpu"`` or ``"cuda"`` (``"cuda:N"``); the saved checkpoint is on the CPU either way.
        workers: data-loader processes making batches ahead (0: in the training process). The
            example stream is the same for any count.
        attention: the attention implementation to train with, ``"eager"`` or ``"sdpa"``; None
            picks by device (eager on CPU, where it trained 1.3x faster than SDPA in bf16; SDPA on
            CUDA). The saved and returned model uses the loading default either way.
        stop_after: save and stop once this many steps of the schedule are done (a run sized to a
            session); ``resume=True`` continues it. None trains to ``config.steps``.
        keep_every: also keep the model (without training state) every this many steps, in
            ``out_dir/steps/STEP``, for a learning curve; None keeps only the latest.

    Returns:
        ``(lvlm, manifest)``: the trained model (in eval mode, on the CPU) and the run's record.

    Raises:
        ConfigError: ``device`` is not available here, ``workers`` is negative, ``workers`` is
            asked of stream 1, ``stop_after`` is not a step of the schedule, or ``keep_every`` is
            not a whole number of steps or has no ``out_dir`` to keep in.
    """
    device = check_device(device)
    if config.precision == AUTO_PRECISION:
        config = dataclasses.replace(config, precision=auto_precision(device, out_dir if resume else None))
    if config.rope_layout == AUTO_LAYOUT:
        config = dataclasses.replace(config, rope_layout=auto_rope_layout(config, out_dir if resume else None))
    check_whole_number("workers", workers, minimum=0)
    if stop_after is not None:
        check_whole_number("stop_after", stop_after)
        if stop_after > config.steps:
            raise ConfigError(f"stop_after ({stop_after}) is past the end of the schedule ({config.steps} steps); "
                              "give a step from 1 to steps, or leave it out to train to the end")
    if keep_every is not None:
        check_whole_number("keep_every", keep_every)
        if out_dir is None:
            raise ConfigError("keep_every needs a folder to keep the models in; give out_dir, or leave keep_every out")
    if attention is None:
        attention = "sdpa" if device.type == "cuda" else "eager"
    if attention not in ATTENTIONS:
        raise ConfigError(f"attention must be one of {', '.join(ATTENTIONS)} or None (by device), got {attention!r}")
    if workers and config.data_stream == 1:
        raise ConfigError("stream 1 (the shipped model's draw) is made in order in the training process; "
                          "use workers=0 with it, or data_stream=2")
    with training_process(config.threads, device):
        return _train(out_dir, config, on_progress, save_every, resume, device, workers, attention,
                      config.steps if stop_after is None else stop_after, keep_every)


@contextlib.contextmanager
def training_process(threads: int, device: torch.device):
    """Run a training with ``threads`` CPU threads and its own random state: seeding happens inside,
    and the caller's thread count and global RNG state (CPU, and ``device``'s on CUDA) are left as
    they were."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            yield
    finally:
        torch.set_num_threads(before)


def warmup_cosine(optimizer, warmup_steps: int, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps``, then a cosine from the peak down to 5% of it at ``steps``."""

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, steps - warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def auto_precision(device: str | torch.device, out_dir: str | os.PathLike[str] | None = None) -> str:
    """The precision ``--precision auto`` trains with: a resumed run's own (``out_dir`` holds one);
    else bfloat16 on CUDA, and on a CPU only where a bf16 matrix product is measured faster than a
    float32 one (CPUs with native bf16); float32 elsewhere. On an AVX2-only CPU bf16 trains about 30x
    slower than float32 (measured, BENCHMARKS.md)."""
    saved = _resumed_setting(out_dir, "precision", PRECISIONS)
    if saved is not None:
        return saved
    if check_device(device).type == "cuda":
        return "bfloat16"
    return "bfloat16" if _bf16_speedup() > 1.0 else "float32"


def auto_rope_layout(config: TrainConfig, out_dir: str | os.PathLike[str] | None = None) -> str:
    """The rope layout ``--rope-layout auto`` trains with: a resumed run's own (``out_dir`` holds
    one), else that of ``config.init_from``'s checkpoint, else blocks (Qwen2-VL's own), so that a run
    never changes its base's layout unless told to."""
    saved = _resumed_setting(out_dir, "rope_layout", ROPE_LAYOUTS)
    if saved is not None:
        return saved
    if config.init_from is None:
        return "blocks"
    folder = _base_folder(config.init_from)
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


def _resumed_setting(out_dir: str | os.PathLike[str] | None, name: str, choices: tuple[str, ...]) -> str | None:
    """The setting ``name`` of the run saved in ``out_dir`` (a run saved before it existed: ``_LEGACY``'s),
    or None where there is no saved run or its value is none of ``choices``."""
    from redgraph.models.embedded import manifest

    if out_dir is None:
        return None
    record = manifest(out_dir)
    if not record:
        return None
    saved = record.get("config", {}).get(name, _LEGACY[name])
    return saved if saved in choices else None


@functools.cache
def _bf16_speedup(side: int = 256, repeats: int = 5) -> float:
    """How many times faster a bf16 ``side`` x ``side`` matrix product runs than a float32 one on this CPU.

    Measured once per process (every run in it then decides alike), each dtype's fastest of
    ``repeats`` products, so that other work on the machine does not flip the answer."""
    generator = torch.Generator().manual_seed(0)
    timings = []
    for dtype in (torch.float32, torch.bfloat16):
        a = torch.randn(side, side, generator=generator).to(dtype)
        a @ a  # warm-up
        fastest = math.inf
        for _ in range(repeats):
            started = time.perf_counter()
            a @ a
            fastest = min(fastest, time.perf_counter() - started)
        timings.append(fastest)
    return timings[0] / max(timings[1], 1e-9)


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device if this machine can train on it, else a ConfigError saying what to use."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device must be cpu or cuda (cuda:N), got {device!r}") from None
    if parsed.type == "cpu":
        return parsed
    if parsed.type != "cuda":
        raise ConfigError(f"device must be cpu or cuda (cuda:N), got {device!r}")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: this torch ({torch.__version__}) sees no CUDA device; use --device cpu")
    if parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                          f"numbered from 0")
    return parsed


def _train(out_dir, config: TrainConfig, on_progress: ProgressCallback | None, save_every: int, resume: bool,
           device: torch.device, workers: int, attention: str, last: int, keep_every: int | None = None):
    from redgraph.models.loading import LVLM

    model, processor = build_untrained(config.dimensions, seed=config.seed, rope_layout=config.rope_layout)
    base = None
    if config.init_from is not None and not resume:  # a resumed run's weights come from its own state
        base = _init_from(config, model, processor)
    loading_default = model.config._attn_implementation
    model.set_attn_implementation(attention)
    model.train()
    heads = None
    if config.aux_weight > 0 or config.cell_weight > 0 or config.position_weight > 0:
        heads = VisionHeads(config.dimensions.hidden, config.aux_weight, config.cell_weight,  # merged token width
                            config.position_weight)
        heads.to(device)
    model.to(device)
    parameters = list(model.parameters()) + (list(heads.parameters()) if heads is not None else [])
    decay = [p for p in parameters if p.ndim >= 2]
    no_decay = [p for p in parameters if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate, betas=(0.9, 0.98),
    )

    scheduler = warmup_cosine(optimizer, config.warmup_steps, config.steps)
    rng = random.Random(f"redgraph-train-tasks:{config.seed}")
    losses: list[float] = []
    run = {"device": str(device), "workers": workers, "attention": attention, "seconds": 0.0, "base": base}
    lvlm = LVLM(model=model, processor=processor, name="redgraph-embedded")
    first = 0
    if resume:
        first = _restore(out_dir, config, model, optimizer, scheduler, rng, heads, losses, run)
        if first > last:
            raise ConfigError(f"the run in {out_dir} has already done {first} steps, past stop_after ({last}); "
                              f"stop it after a later step (up to {config.steps}), or leave stop_after out")
    seconds_before = run["seconds"]
    started = time.perf_counter()

    def elapsed() -> float:
        return seconds_before + time.perf_counter() - started

    def state(done: int) -> dict:
        return {"config": asdict(config), "steps_done": done, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "task_rng": rng.getstate(),
                "aux_head": heads.scene.state_dict() if heads is not None and heads.scene is not None else None,
                "cell_head": heads.cell.state_dict() if heads is not None and heads.cell is not None else None,
                "position_head": (heads.position.state_dict() if heads is not None and heads.position is not None
                                  else None),
                "losses": list(losses),
                "seconds": elapsed(), "base": run["base"]}

    rope = rope_index(model.config)
    if config.data_stream == 1:
        batches = (micro_batches(sample_batch(step, config, processor, rng), config, processor, rope)
                   for step in range(first, last))
    else:
        batches = torch.utils.data.DataLoader(
            StepBatches(config, processor, rope), batch_size=None, sampler=range(first, last),
            num_workers=workers, worker_init_fn=one_thread_per_worker if workers else None,
            prefetch_factor=4 if workers else None, pin_memory=device.type == "cuda",
        )
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bfloat16")
    for step, groups in zip(range(first, last), batches):
        optimizer.zero_grad(set_to_none=True)
        images = sum(int(g["scene_targets"].shape[0]) for g in groups if "scene_targets" in g)
        total = torch.zeros((), device=device)
        for group in groups:
            shares = (group["input_ids"].shape[0] / config.batch_size,
                      group["scene_targets"].shape[0] / images if "scene_targets" in group else 0.0)
            group = {k: v if k in HOST_ONLY else v.to(device, non_blocking=True) for k, v in group.items()}
            with autocast:
                loss = example_loss(model, group, heads, shares=shares)
            loss.backward()
            total += loss.detach()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(total.item())
        if on_progress is not None:
            on_progress(step + 1, losses[-1])
        if out_dir is not None and (step + 1) % save_every == 0 and step + 1 < last:
            _save(lvlm, out_dir, _manifest(config, losses, elapsed(), run, partial=True), state(step + 1))
        if keep_every is not None and (step + 1) % keep_every == 0:
            kept = Path(out_dir) / KEPT_STEPS / str(step + 1)
            kept.mkdir(parents=True, exist_ok=True)
            lvlm.save(kept)
            _write_manifest(kept, _manifest(config, losses, elapsed(), run, partial=step + 1 < config.steps))
    model.eval()
    model.to("cpu")
    model.set_attn_implementation(loading_default)
    manifest = _manifest(config, losses, elapsed(), run, partial=last < config.steps)
    if out_dir is not None:
        _save(lvlm, out_dir, manifest, state(last))
    return lvlm, manifest


TRAINING_STATE = "training_state.pt"
KEPT_STEPS = "steps"  # keep_every's models: OUT/steps/STEP


def _init_from(config: TrainConfig, model, processor) -> dict:
    """Copy the weights of ``config.init_from`` into ``model``; return what the manifest records of the base."""
    import hashlib

    from redgraph.models.embedded import manifest
    from redgraph.models.loading import load_embedded

    folder = _base_folder(config.init_from)
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


def _base_folder(init_from: str) -> Path:
    """The checkpoint folder ``init_from`` names (``EMBEDDED_BASE``: the shipped model's)."""
    from redgraph.models.embedded import EMBEDDED_DIR

    folder = EMBEDDED_DIR if init_from == EMBEDDED_BASE else Path(init_from)
    if not folder.is_dir():
        raise ConfigError(f"init_from {init_from!r}: no such folder; name a checkpoint folder (one that "
                          f"`redgraph embedded train` wrote) or {EMBEDDED_BASE!r} for the shipped model")
    return folder


def differing_settings(config: TrainConfig, saved: dict) -> list[str]:
    """The settings in which a saved run's config (as its training state or manifest records it)
    differs from ``config``; a setting that did not exist when it was saved counts as ``_LEGACY``'s."""
    mine = json.loads(json.dumps(asdict(config)))
    theirs = {**_LEGACY, **json.loads(json.dumps(saved))}
    return sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))


def _restore(out_dir, config: TrainConfig, model, optimizer, scheduler, rng: random.Random, heads,
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
    if config.category_weight_map is not None:
        flags.append(f"--category-weights {format_category_weights(config.category_weights)}")
    return "redgraph embedded train OUT " + " ".join(flags)


def _manifest(config: TrainConfig, losses: list[float], seconds: float, run: dict, *, partial: bool) -> dict:
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
        "versions": _versions(),
        "machine": f"{platform.machine()}, {config.threads} threads"
                   + (f", {torch.cuda.get_device_name(run['device'])}" if run["device"].startswith("cuda") else ""),
        **({"base": run["base"]} if run.get("base") else {}),
    }


def _versions() -> dict[str, str]:
    """Versions of what decides a run's numbers (a run reproduces only with the same ones)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("torch", "transformers", "tokenizers", "pillow", "numpy", "redgraph"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def _save(lvlm, out_dir, manifest: dict, training_state: dict) -> None:
    """Save the weights, then the training state, then the manifest, each of the last two by a rename,
    so that a run killed mid-save leaves the previous save's state and manifest whole (a resumed run
    restores from the state; the weights are rewritten at the next save)."""
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    lvlm.save(path)
    partial = path / (TRAINING_STATE + ".partial")
    torch.save(training_state, partial)
    os.replace(partial, path / TRAINING_STATE)
    _write_manifest(path, manifest)


def _write_manifest(folder: Path, manifest: dict) -> None:
    write_file(folder / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n", what="training manifest")
