"""``redgraph embedded train`` / ``evaluate`` and ``redgraph data export``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from redgraph.cli.app import console, data_app, embedded_app, fail, load_model, machine_output, out
from redgraph.errors import RedgraphError


@embedded_app.command("train")
def embedded_train(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the checkpoint to.")],
    steps: Annotated[int, typer.Option(help="Optimiser steps (the shipped model: see its manifest).")] = 2000,
    seed: Annotated[int, typer.Option(help="Seeds weights, data and task choice.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = 32,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate (AdamW, warm-up then cosine).")] = 1e-3,
    warmup_steps: Annotated[int, typer.Option(help="Steps of linear warm-up.")] = 300,
    threads: Annotated[int, typer.Option(help="CPU threads; results reproduce for a fixed count.")] = 2,
    device: Annotated[str, typer.Option(help="cpu or cuda (cuda:N). The checkpoint is saved for the CPU either way.")] = "cpu",
    precision: Annotated[str, typer.Option(help="auto: bfloat16 on CUDA and on CPUs that run it faster than float32 "
                                                "(a resumed run keeps its own); bfloat16: bf16 autocast, float32 "
                                                "weights (about 1.8x faster on a CPU with AVX-512 BF16, about 30x "
                                                "slower on an AVX2-only CPU); float32. The manifest records which.")]
    = "auto",
    workers: Annotated[int, typer.Option(help="Data-loader processes making batches ahead (0: none); the example "
                                              "stream is the same for any count.")] = 0,
    accumulate: Annotated[int, typer.Option(help="Micro-batches per step, grouped by length (less padding, less "
                                                 "memory); the same loss up to rounding.")] = 1,
    data_stream: Annotated[int, typer.Option(help="2: each example from its own seed; 1: the shipped model's draw "
                                                  "(in-process only).")] = 2,
    attention: Annotated[Optional[str], typer.Option(help="Attention implementation to train with: eager or sdpa "
                                                          "(default: eager on CPU, sdpa on CUDA).")] = None,
    aux_weight: Annotated[float, typer.Option(help="Weight of the auxiliary scene-fact loss on the mean image token (0: none).")] = 0.0,
    cell_weight: Annotated[float, typer.Option(help="Weight of the cell loss: each image token's own square's facts "
                                                    "(colours, objects, bar ends, characters) read from it (0: none).")] = 0.0,
    position_weight: Annotated[float, typer.Option(help="Weight of the position loss: each image token's own row and "
                                                        "column read from it (0: none).")] = 0.0,
    task_weights: Annotated[Optional[str], typer.Option(help="How often each task is drawn, e.g. 'verify=3,cot=0.5' "
                                                          "(tasks not named: 1). Default: uniform.")] = None,
    category_weights: Annotated[Optional[str], typer.Option(help="How often each question category is asked, "
                                                              "relative to the others of its scene kind, e.g. "
                                                              "'relation_lr=3,field=2' (not named: 1; a kind whose "
                                                              "categories all weigh 0 is not drawn). Default: "
                                                              "uniform.")] = None,
    init_from: Annotated[Optional[str], typer.Option(help="Start from this checkpoint's weights (a folder of the same "
                                                          "dimensions, or 'embedded': the shipped model) instead of "
                                                          "random ones; optimiser and schedule start fresh.")] = None,
    rope_layout: Annotated[str, typer.Option(help="How the language model's rotary frequencies are shared among time, "
                                                  "rows and columns: blocks (Qwen2-VL's: rows and columns get only "
                                                  "slow ones), interleaved (each gets fast ones too, which left/right "
                                                  "needs: BENCHMARKS.md) or auto (the --init-from base's, or a resumed "
                                                  "run's; blocks from scratch). Text is unaffected.")] = "auto",
    tool_share: Annotated[float, typer.Option(help="Share of bar and document examples shown another tool's drawing "
                                                   "of their scene (matplotlib charts in seven style sheets, documents "
                                                   "in real fonts and layouts) instead of the own renderer's (0-1).")]
    = 0.0,
    augment: Annotated[float, typer.Option(help="Share of pictures degraded as scans and screenshots are (JPEG 30-95, "
                                                "blur, rotation, scale and padding; 0-1).")] = 0.0,
    chart_shards: Annotated[Optional[str], typer.Option(help="A folder of matplotlib charts drawn ahead by `redgraph "
                                                             "embedded render` (default: drawn as needed, 80-110 ms "
                                                             "each).")] = None,
    image_side: Annotated[int, typer.Option(help="Side of the square whose pixel count every picture is resized to, "
                                                 "its aspect kept (a multiple of 16; about (side/16)^2 image tokens). The "
                                                 "position head needs 128.")] = 128,
    tool_cells: Annotated[bool, typer.Option(help="Label other tools' undegraded drawings for the cell loss too, from "
                                                  "where each drew what (needs --cell-weight and --tool-share).")]
    = False,
    cell_head_init: Annotated[str, typer.Option(help="How the cell head starts: random, or zero (no gradient into the "
                                                     "vision tower until the head has learned; for fine-tunes).")]
    = "random",
    vocabulary: Annotated[str, typer.Option(help="The scenes' words and numbers: standard (the shipped model's) or "
                                                 "wide (11 colours, 50 titles, 50 fields, bars 1-100, values such as "
                                                 "12.50, 1,204 and $3.99); the vision heads read its facts.")]
    = "standard",
    standard_share: Annotated[float, typer.Option(help="With --vocabulary wide: the share of items drawn from the "
                                                       "standard vocabulary instead (its charts of values up to 9, "
                                                       "two-digit fields), so the shipped model's world stays in the "
                                                       "mix (0-1).")] = 0.0,
    resume: Annotated[bool, typer.Option(help="Continue the stopped run saved in OUT_DIR (same settings); it ends "
                                              "with the weights an uninterrupted run gives.")] = False,
    stop_after: Annotated[Optional[int], typer.Option(help="Save and stop after this step of the --steps schedule "
                                                           "(a run sized to a session); --resume continues it.")] = None,
    keep_every: Annotated[Optional[int], typer.Option(help="Also keep the model every this many steps in "
                                                           "OUT_DIR/steps/STEP, for a learning curve (evaluate each "
                                                           "with `redgraph embedded evaluate --model`).")] = None,
) -> None:
    """Train the embedded model from scratch, on CPU or a GPU; the same settings (and threads) give the same weights."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from redgraph.lab.train import train
    from redgraph.lab.train_config import TrainConfig, parse_category_weights, parse_task_weights

    try:  # precision "auto" is decided by train(), for the device (and a resumed run's own)
        weights = {} if task_weights is None else {"task_weights": parse_task_weights(task_weights)}
        if category_weights is not None:
            weights["category_weights"] = parse_category_weights(category_weights)
        config = TrainConfig(steps=steps, seed=seed, batch_size=batch_size, learning_rate=learning_rate,
                             warmup_steps=warmup_steps, threads=threads, aux_weight=aux_weight, cell_weight=cell_weight,
                             position_weight=position_weight,
                             precision=precision, data_stream=data_stream, accumulate=accumulate,
                             init_from=init_from, rope_layout=rope_layout, tool_share=tool_share, augment=augment,
                             chart_shards=chart_shards, image_side=image_side, tool_cells=tool_cells,
                             cell_head_init=cell_head_init, vocabulary=vocabulary, standard_share=standard_share,
                             **weights)
    except RedgraphError as exc:
        fail(exc)
    columns = (TextColumn("training"), BarColumn(), TextColumn("{task.completed}/{task.total} loss {task.fields[loss]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("train", total=steps, loss="-")
            _, manifest = train(out_dir, config, resume=resume, device=device, workers=workers, attention=attention,
                                stop_after=stop_after, keep_every=keep_every,
                                on_progress=lambda step, loss: progress.update(task, completed=step, loss=f"{loss:.3f}"))
    except RedgraphError as exc:
        fail(exc)
    out.print_json(json.dumps(manifest))


@embedded_app.command("recipe")
def embedded_recipe(
    out_dir: Annotated[Path, typer.Argument(help="Folder for the stages (OUT/01-NAME, ...); the last is the model.")],
    recipe: Annotated[str, typer.Option(help="A recipe TOML file, or 'embedded': the shipped model's.")] = "embedded",
    device: Annotated[str, typer.Option(help="cpu or cuda (cuda:N); the checkpoints are saved for the CPU either way.")]
    = "cpu",
    workers: Annotated[int, typer.Option(help="Data-loader processes (0: none); the example stream is the same for "
                                              "any count.")] = 0,
    threads: Annotated[int, typer.Option(help="CPU threads; results reproduce for a fixed count.")] = 2,
    attention: Annotated[Optional[str], typer.Option(help="eager or sdpa (default: eager on CPU, sdpa on CUDA).")]
    = None,
    save_every: Annotated[int, typer.Option(min=1, help="Save the running stage every this many steps (what a stop "
                                                        "can lose).")] = 250,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print each stage's train command; train nothing.")]
    = False,
) -> None:
    """Run a training recipe: its stages one after another, each from the previous one's weights. Run it
    again after a stop (Ctrl-C, a kill, the end of a session): done stages are skipped and the stopped one
    resumes from its last save, to the weights an uninterrupted run gives."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from redgraph.lab.recipe import load_recipe, recipe_commands, run_recipe

    try:
        loaded = load_recipe(recipe)
        if dry_run:
            out.print(f"# {loaded.description}" if loaded.description else f"# {loaded.source}", soft_wrap=True)
            for command in recipe_commands(loaded, out_dir, threads):
                out.print(command, soft_wrap=True, highlight=False, markup=False)
            out.print(f"# {len(loaded.stages)} stages, {loaded.examples:,} examples")
            return
    except RedgraphError as exc:
        fail(exc)
    columns = (TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total} loss {task.fields[loss]}"), TimeElapsedColumn(),
               TimeRemainingColumn())
    count = len(loaded.stages)
    table = Table("stage", "folder", "examples", "this run", "seconds", "loss (last 50)")
    statuses: dict[int, str] = {}
    with Progress(*columns, console=console) as progress:
        current = {}

        def on_stage(index, stage, folder, status):
            statuses[index] = status
            if status == "done":
                console.print(f"stage {index}/{count} {stage.name}: done before, in {folder}", highlight=False)
                return
            current["task"] = progress.add_task(f"stage {index}/{count} {stage.name}", total=stage.last_step,
                                                loss="-")

        def on_progress(step, loss):
            progress.update(current["task"], completed=step, loss=f"{loss:.3f}")

        try:
            manifests = run_recipe(out_dir, loaded, threads=threads, device=device, workers=workers,
                                   attention=attention, save_every=save_every, on_stage=on_stage,
                                   on_progress=on_progress)
        except RedgraphError as exc:
            fail(exc)
    for index, (stage, folder, manifest) in enumerate(zip(loaded.stages, loaded.folders(out_dir), manifests), 1):
        table.add_row(f"{index} {stage.name}", str(folder), f"{manifest['examples_seen']:,}",
                      {"done": "done before", "resumed": "resumed"}.get(statuses[index], "trained"),
                      f"{manifest['seconds']:.0f}", f"{manifest['final_loss_mean_last_50']:.3f}")
    out.print(table)
    out.print(f"model: {loaded.folders(out_dir)[-1]}  (evaluate it: redgraph embedded evaluate --model "
              f"{loaded.folders(out_dir)[-1]})", soft_wrap=True, highlight=False)


@embedded_app.command("evaluate")
def embedded_evaluate(
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Checkpoint folder; default: the embedded model.")] = None,
    split: Annotated[str, typer.Option(help="train, validation or test.")] = "test",
    limit: Annotated[int, typer.Option(help="Items to evaluate.")] = 600,
    seed: Annotated[int, typer.Option(help="Generator seed of the items.")] = 0,
    adapter: Annotated[Optional[str], typer.Option(help="An SDRT adapter folder (`redgraph distill train`) to attach.")]
    = None,
    categories: Annotated[Optional[str], typer.Option(help="Only these question categories, e.g. "
                                                          "'relation_lr,relation_ab' (the first LIMIT items of them).")]
    = None,
    source: Annotated[str, typer.Option(help="Who drew the pictures: synthetic (the own renderer, every kind), "
                                             "matplotlib (bar charts, its default style), fonts (documents in DejaVu "
                                             "fonts) or heldout (charts and documents in a style sheet and a font "
                                             "training never draws).")] = "synthetic",
    vocabulary: Annotated[str, typer.Option(help="The items' words and numbers: standard (the shipped model's) or "
                                                 "wide (redgraph.data.vocabulary).")] = "standard",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Held-out accuracy: answers from the image, from the gold rationale, rationale facts, claim checks."""
    machine_output(as_json)
    from rich.progress import Progress

    from redgraph.lab.evaluate import METRICS, check_items, evaluate

    try:
        check_items(split, source, vocabulary)  # before the model loads
        with console.status(f"loading {model or 'the embedded model'} ..."):
            lvlm = load_model(model, adapter=adapter)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("evaluating", total=limit)
            chosen = None if categories is None else [c.strip() for c in categories.split(",") if c.strip()]
            summary = evaluate(lvlm, split=split, limit=limit, seed=seed, categories=chosen, source=source,
                               vocabulary=vocabulary,
                               on_progress=lambda done, total: progress.update(task, completed=done))
    except RedgraphError as exc:
        fail(exc)
    if as_json:
        out.print_json(json.dumps(summary))
        return
    rows = {**summary["per_kind"], "overall": summary["overall"]}
    intervals = {**summary["ci95"]["per_kind"], "overall": summary["ci95"]["overall"]}
    table = Table("kind", *METRICS, caption=r"\[low-high]: the 95% interval of image_answer_acc; --json gives "
                                            "every figure's (ci95)")
    for kind, row in rows.items():
        low, high = intervals[kind]["image_answer_acc"]
        cells = [f"{row.get(m, float('nan')):.3f}" for m in METRICS]
        cells[0] += f" [{low:.2f}-{high:.2f}]"
        table.add_row(kind, *cells)
    out.print(table)


@embedded_app.command("render")
def embedded_render(
    out_dir: Annotated[Path, typer.Argument(help="Folder for the shards (tar files, WebDataset layout).")],
    count: Annotated[int, typer.Option(help="Charts to draw.")] = 6000,
    seed: Annotated[int, typer.Option(help="Seeds the scenes and their looks.")] = 0,
    workers: Annotated[int, typer.Option(help="Processes drawing at once.")] = 2,
    shard_size: Annotated[int, typer.Option(help="Charts per shard.")] = 1000,
    vocabulary: Annotated[str, typer.Option(help="The charts' colours and values: standard or wide (the run that "
                                                 "reads the shards trains on the same).")] = "standard",
) -> None:
    """Draw training charts with matplotlib ahead of training (`embedded train --chart-shards OUT_DIR`)."""
    from rich.progress import Progress

    from redgraph.data.vocabulary import vocabulary_named
    from redgraph.lab.pictures import render_shards

    try:
        chosen = vocabulary_named(vocabulary)
        with Progress(console=console) as progress:
            task = progress.add_task("drawing charts", total=count)
            description = render_shards(out_dir, count, seed=seed, workers=workers, shard_size=shard_size,
                                        vocabulary=chosen,
                                        on_progress=lambda done, total: progress.update(task, completed=done))
    except RedgraphError as exc:
        fail(exc)
    out.print_json(json.dumps(description))


@data_app.command("export")
def data_export(
    out_dir: Annotated[Path, typer.Argument(help="Folder for {split}.jsonl and images/.")],
    train: Annotated[int, typer.Option(min=0, help="Train items (0: no train file).")] = 3000,
    validation: Annotated[int, typer.Option(min=0, help="Validation items (0: no validation file).")] = 300,
    test: Annotated[int, typer.Option(min=0, help="Test items (0: no test file).")] = 600,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 0,
    vocabulary: Annotated[str, typer.Option(
        help="The scenes' words and numbers: standard (the shipped model's: 5 colours, 10 titles, 6 fields, "
             "bars 1-9, values 10-99) or wide (11 colours, 50 titles, 50 fields, bars 1-100, values such as "
             "12.50, 1,204 and $3.99).")] = "standard",
) -> None:
    """Write the synthetic dataset as GQA-style JSONL + PNG images, with fixed splits."""
    from redgraph.data import export_dataset
    from redgraph.data.vocabulary import vocabulary_named

    try:
        counts = {"train": train, "validation": validation, "test": test}
        written = export_dataset(out_dir, {split: n for split, n in counts.items() if n > 0}, seed=seed,
                                 vocabulary=vocabulary_named(vocabulary))
    except RedgraphError as exc:
        fail(exc)
    for split, path in written.items():
        out.print(f"{split}: {path}")
