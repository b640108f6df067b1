"""Training the embedded model from scratch, on CPU or a GPU, reproducibly from a seed.

The data is an endless stream of fresh train-split items (never a validation or test scene), so
the model does not see any item twice; data workers make the batches (see :mod:`.batches`). Loss:
cross-entropy on the target tokens (and the end-of-turn token), averaged per example, so short
answers weigh as much as long rationales. Weights and optimiser stay float32; with
``precision="bfloat16"`` the forward and backward run under bf16 autocast; ``"auto"`` (the default)
takes bfloat16 only where the device runs it faster than float32.
"""


from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from dataclasses import asdict
from pathlib import Path

import torch

from redgraph.errors import ConfigError, check_whole_number
from redgraph.lab.architecture import build_untrained
from redgraph.lab.batches import HOST_ONLY, StepBatches, micro_batches, one_thread_per_worker, rope_index, step_examples
from redgraph.lab.checkpoints import (
    KEPT_STEPS,
    auto_rope_layout,
    init_from_base,
    restore_run,
    run_manifest,
    save_run,
    write_manifest,
)
from redgraph.lab.losses import VisionHeads, example_loss
from redgraph.lab.pictures import load_shards, shards_vocabulary
from redgraph.lab.precision import auto_precision, check_device, training_process
from redgraph.lab.tasks import Example
from redgraph.lab.train_config import ATTENTIONS, AUTO_LAYOUT, AUTO_PRECISION, ProgressCallback, TrainConfig


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
        ConfigError: ``device`` is not available here, ``chart_shards`` cannot be read (or lack the
            layouts ``tool_cells`` needs), ``workers`` is negative, ``workers`` is asked of stream 1,
            ``stop_after`` is not a step of the schedule, or ``keep_every`` is not a whole number of
            steps or has no ``out_dir`` to keep in.
    """
    device = check_device(device)
    if config.chart_shards is not None:
        charts = load_shards(config.chart_shards)  # unreadable shards are refused before any training
        drawn_in = shards_vocabulary(config.chart_shards)
        if drawn_in != config.vocabulary:
            raise ConfigError(f"the chart shards in {config.chart_shards} were drawn in the {drawn_in} vocabulary and "
                              f"this run trains on the {config.vocabulary} one; draw shards with `redgraph embedded "
                              f"render --vocabulary {config.vocabulary}`, or leave --chart-shards out")
        if config.tool_cells and any(layout is None for _, _, layout in charts):
            raise ConfigError(f"the chart shards in {config.chart_shards} were drawn without the layout the cell "
                              "loss labels their pictures from; draw them again with `redgraph embedded render`, "
                              "or train without --tool-cells")
    if config.precision == AUTO_PRECISION:
        config = dataclasses.replace(config, precision=auto_precision(device, out_dir if resume else None))
    if config.rope_layout == AUTO_LAYOUT:
        config = dataclasses.replace(config, rope_layout=auto_rope_layout(config, out_dir if resume else None))
    if config.freeze_vision and config.init_from is None:
        raise ConfigError("freeze_vision keeps the base's vision tower as it is; it needs init_from (a run from "
                          "scratch would keep a random one)")
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




def warmup_cosine(optimizer, warmup_steps: int, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps``, then a cosine from the peak down to 5% of it at ``steps``."""

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, steps - warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)



def _train(out_dir, config: TrainConfig, on_progress: ProgressCallback | None, save_every: int, resume: bool,
           device: torch.device, workers: int, attention: str, last: int, keep_every: int | None = None):
    from redgraph.models.loading import LVLM

    model, processor = build_untrained(config.dimensions, seed=config.seed, rope_layout=config.rope_layout,
                                       image_side=config.image_side)
    base = None
    if config.init_from is not None and not resume:  # a resumed run's weights come from its own state
        base = init_from_base(config, model, processor)
    loading_default = model.config._attn_implementation
    model.set_attn_implementation(attention)
    model.train()
    heads = None
    if config.aux_weight > 0 or config.cell_weight > 0 or config.position_weight > 0:
        heads = VisionHeads(config.dimensions.hidden, config.aux_weight, config.cell_weight,  # merged token width
                            config.position_weight, cell_init=config.cell_head_init,
                            vocabulary=config.scene_vocabulary)
        heads.to(device)
    model.to(device)
    if config.freeze_vision:  # the base's eyes, exactly: no gradient, no optimiser state, no weight decay
        model.model.visual.requires_grad_(False)
    parameters = [p for p in model.parameters() if p.requires_grad] + (list(heads.parameters()) if heads is not None
                                                                         else [])
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
        first = restore_run(out_dir, config, model, optimizer, scheduler, rng, heads, losses, run)
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
            save_run(lvlm, out_dir, run_manifest(config, losses, elapsed(), run, partial=True), state(step + 1))
        if keep_every is not None and (step + 1) % keep_every == 0:
            kept = Path(out_dir) / KEPT_STEPS / str(step + 1)
            kept.mkdir(parents=True, exist_ok=True)
            lvlm.save(kept)
            write_manifest(kept, run_manifest(config, losses, elapsed(), run, partial=step + 1 < config.steps))
    model.eval()
    model.to("cpu")
    model.set_attn_implementation(loading_default)
    manifest = run_manifest(config, losses, elapsed(), run, partial=last < config.steps)
    if out_dir is not None:
        save_run(lvlm, out_dir, manifest, state(last))
    return lvlm, manifest

