"""``redgraph distill traces`` / ``train``: SDRT self-distillation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from redgraph.cli.app import console, distill_app, fail, load_model, machine_output, out, parse_shard
from redgraph.errors import ConfigError, RedgraphError


@distill_app.command("traces")
def distill_traces(
    out_dir: Annotated[Path, typer.Argument(help="Folder for traces.jsonl; running again on it resumes.")],
    source: Annotated[str, typer.Option(help="synthetic:SPLIT, a dataset folder or file (as `redgraph eval` reads), "
                                             "or pictures:DIR, a folder of your own unlabelled pictures (and PDFs) "
                                             "with --questions or --kind.")]
    = "synthetic:train",
    questions: Annotated[Optional[Path], typer.Option(help="pictures:DIR's questions: a .txt file (one asked of "
                                                           "every picture a line) or .jsonl ({\"question\": ..., "
                                                           "\"image\": path in DIR} a line).")] = None,
    kind: Annotated[Optional[str], typer.Option(help="pictures:DIR's kind, whose own questions the model is asked of "
                                                     "each: bars, document or shapes.")] = None,
    split: Annotated[Optional[str], typer.Option(help="Which {split}.jsonl of a dataset folder with several.")] = None,
    limit: Annotated[int, typer.Option(help="The first N items (before sharding).")] = 300,
    seed: Annotated[int, typer.Option(help="The synthetic generator's seed (1: scenes the embedded model was not "
                                           "trained on).")] = 1,
    style: Annotated[Optional[list[str]], typer.Option("--style", help="Prompt style, one trace each (repeat); "
                                                                       "default: facts.")] = None,
    per_style: Annotated[int, typer.Option(help="Traces per style: the first greedy, the others sampled.")] = 1,
    teacher: Annotated[str, typer.Option(help="Who writes the traces: 'local' (the model) or 'openai:MODEL'.")] = "local",
    base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible server of an openai:MODEL teacher.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="The local model (teacher when local, and the "
                                                                       "critic); default: the embedded model.")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Longest analysis, rationale or answer.")] = 64,
    critic_scoring: Annotated[str, typer.Option(help="How the critic checks claims: probes, p_yes or both.")] = "probes",
    experts: Annotated[str, typer.Option(help="The critic's experts: lvlm (the model's own eyes), or lvlm,ocr (an OCR "
                                              "engine beside them; what it reads is kept in the traces and teaches "
                                              "the adapter: see `distill train --no-experts`).")] = "lvlm",
    shard: Annotated[str, typer.Option(help="i/n: this process's share of the items; train reads all shards' folders.")]
    = "0/1",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Write reasoning traces: per item, one per prompt style (and sample), its answer, the critic's support."""
    machine_output(as_json)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from redgraph.distill.traces import TraceConfig, generate_traces

    try:
        config = TraceConfig(source=source, split=split, limit=limit, seed=seed, styles=tuple(style or ("facts",)),
                             per_style=per_style, teacher=teacher, model=model, base_url=base_url,
                             max_new_tokens=max_new_tokens, critic_scoring=critic_scoring, shard=parse_shard(shard),
                             questions=None if questions is None else str(questions), kind=kind, experts=experts)
        with Progress(TextColumn("traces"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console,
                      transient=True) as progress:
            task = progress.add_task("traces", total=None)
            result = generate_traces(config, out_dir,
                                     on_progress=lambda done, total: progress.update(task, completed=done, total=total))
    except RedgraphError as exc:
        fail(exc)
    if as_json:
        out.print_json(json.dumps(result))
    else:
        out.print(f"{result['traces']} traces of {result['items']} items in {out_dir} ({result['written']} written now)")


def _layers(text: str, option: str = "--layers") -> tuple[int, ...]:
    if text.strip().lower() == "none":
        return ()
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        every = ", all" if option == "--vision-layers" else ""
        raise ConfigError(f"{option} must be layer numbers separated by commas{every}, or none; got {text!r}") from None


def _skip_layer(text: str) -> int | None:
    if text.strip().lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--skip-layer must be a layer number or none, got {text!r}") from None


def _adapter(kind: str, layers: str | None, rank: int, skip_layer: str | None, vision_layers: str | None = None):
    """The adapter the options name, checked before the model loads (what needs the model, LoRA's default
    layers and ``--vision-layers all``, is filled in by :func:`_fill_layers` once it has loaded)."""
    from redgraph.models.adapter import AdapterConfig

    lora = kind == "lora"
    return AdapterConfig(layers=_layers(layers or ("0" if lora else "1")), rank=rank, kind=kind,
                         skip_layer=_skip_layer(skip_layer or ("none" if lora else "2")),
                         vision_layers=(0,) if _every_block(vision_layers) else _layers(vision_layers or "none",
                                                                                        "--vision-layers"))


def _every_block(vision_layers: str | None) -> bool:
    """Whether ``--vision-layers`` asks for every block of the vision tower (``all``)."""
    return vision_layers is not None and vision_layers.strip().lower() == "all"


def _fill_layers(adapter, layers: str | None, vision_layers: str | None, lvlm):
    """``adapter`` with every language layer of ``lvlm`` when it is LoRA and no layers were named, and
    every vision block with ``--vision-layers all``."""
    from redgraph.models.adapter import language_layers, vision_blocks

    if adapter.kind == "lora" and layers is None:
        adapter = dataclasses.replace(adapter, layers=tuple(range(len(language_layers(lvlm.model)))))
    if _every_block(vision_layers):
        adapter = dataclasses.replace(adapter, vision_layers=tuple(range(len(vision_blocks(lvlm.model)))))
    return adapter


KIND_HELP = "sdrt: representation intervention + vision skip; lora: LoRA through peft (pip install 'redgraph[distill]')."
LAYERS_HELP = ("Language layers the intervention edits (LoRA: adapts), e.g. '1' or '0,1,2,3'; none: no intervention. "
               "Default: 1 (sdrt), all (lora).")
VISION_HELP = ("LoRA only (--kind lora): vision-tower blocks whose attention and MLP it adapts too, e.g. '0,1' or all "
               "(Qwen-VL families); what lets the student change what the model sees. Default: none.")
SKIP_HELP = ("Language layer the vision skip enters before (Qwen-VL families); none: no skip. Default: 2 (sdrt), "
             "none (lora).")
KEEP_HELP = ("Pictures whose answers the adapter must keep, each with the base model's own answer (no label "
             "read): synthetic:train (the project's own pictures) or a dataset folder or file; default: none.")
KEEP_LIMIT_HELP = "How many of --keep's pictures."
KEEP_SHARE_HELP = "The share of every batch drawn from --keep's pictures."


@distill_app.command("train")
def distill_train(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the adapter to; the same command run again on a "
                                                 "stopped run's folder goes on from its last save.")],
    traces: Annotated[list[Path], typer.Argument(help="Trace folders (the shards of one trace set).")],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="The base model; default: the traces' local "
                                                                       "model.")] = None,
    steps: Annotated[int, typer.Option(help="Optimiser steps.")] = 300,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = 32,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate (AdamW, warm-up then cosine).")] = 3e-3,
    warmup_steps: Annotated[int, typer.Option(help="Steps of linear warm-up.")] = 30,
    seed: Annotated[int, typer.Option(help="Seeds the adapter and the example draw.")] = 0,
    threads: Annotated[int, typer.Option(help="CPU threads; results reproduce for a fixed count.")] = 2,
    precision: Annotated[str, typer.Option(help="auto: bfloat16 on CUDA and on CPUs that run it faster than float32, "
                                                "else float32; bfloat16 (autocast) or float32.")] = "auto",
    device: Annotated[str, typer.Option(help="cpu or cuda (cuda:N); the adapter is saved for the CPU either way.")] = "cpu",
    kind: Annotated[str, typer.Option(help=KIND_HELP)] = "sdrt",
    layers: Annotated[Optional[str], typer.Option(help=LAYERS_HELP)] = None,
    rank: Annotated[int, typer.Option(help="The intervention's (or LoRA's) rank.")] = 4,
    skip_layer: Annotated[Optional[str], typer.Option(help=SKIP_HELP)] = None,
    vision_layers: Annotated[Optional[str], typer.Option(help=VISION_HELP)] = None,
    critic: Annotated[bool, typer.Option("--critic/--no-critic", help="Weigh traces by the critic's support.")] = True,
    agreement: Annotated[bool, typer.Option("--agreement/--no-agreement", help="Weigh traces by answer agreement.")]
    = True,
    uniform_styles: Annotated[bool, typer.Option(help="Every style weighs 1 (else: learned from the traces).")] = False,
    threshold: Annotated[float, typer.Option(help="Traces weighing less are dropped.")] = 0.25,
    drop_unsure: Annotated[bool, typer.Option(help="Drop a trace the critic was sure of no claim of (else: weigh it "
                                                   "without the critic).")] = False,
    experts: Annotated[bool, typer.Option("--experts/--no-experts", help="Where the critic's experts (traces written "
                                          "with --experts lvlm,ocr) answered an item's question, their answer teaches "
                                          "it and traces that differ are dropped.")] = True,
    control: Annotated[bool, typer.Option(help="Train on the same items' gold answers instead (the control).")] = False,
    keep: Annotated[Optional[str], typer.Option(help=KEEP_HELP)] = None,
    keep_limit: Annotated[int, typer.Option(help=KEEP_LIMIT_HELP)] = 400,
    keep_share: Annotated[float, typer.Option(help=KEEP_SHARE_HELP)] = 0.25,
    save_every: Annotated[int, typer.Option(help="Save the run's state every this many steps, to go on from after a "
                                                 "stop; 0: never.")] = 25,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest only.")] = False,
) -> None:
    """Distil weighted traces into an adapter (base weights frozen); load it with --adapter."""
    machine_output(as_json)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from redgraph.distill.student import DistillConfig, distill
    from redgraph.distill.traces import read_traces
    from redgraph.distill.weights import WeightConfig

    try:  # precision "auto" is decided by distill(), for the device
        adapter = _adapter(kind, layers, rank, skip_layer, vision_layers)
        config = DistillConfig(
            steps=steps, batch_size=batch_size, learning_rate=learning_rate, warmup_steps=warmup_steps, seed=seed,
            threads=threads, precision=precision, targets="gold" if control else "traces", adapter=adapter,
            keep=keep, keep_limit=keep_limit, keep_share=keep_share,
            weighting=WeightConfig(critic=critic, agreement=agreement,
                                   style_weights="uniform" if uniform_styles else "learned", threshold=threshold,
                                   unsure="drop" if drop_unsure else "ignore", experts=experts),
        )
        records, identity = read_traces([str(t) for t in traces])
        with console.status(f"loading {model or identity.get('model') or 'the embedded model'} ..."):
            lvlm = load_model(model or identity.get("model"))
        config = dataclasses.replace(config, adapter=_fill_layers(adapter, layers, vision_layers, lvlm))
        columns = (TextColumn("distilling"), BarColumn(),
                   TextColumn("{task.completed}/{task.total} loss {task.fields[loss]}"), TimeElapsedColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, console=console, transient=as_json) as progress:
            task = progress.add_task("distill", total=steps, loss="-")
            _, manifest = distill(lvlm, records, config, out_dir=out_dir, device=device, save_every=save_every,
                                  extra={"traces": [str(t) for t in traces], "traces_settings": identity},
                                  on_progress=lambda step, loss: progress.update(task, completed=step, loss=f"{loss:.3f}"))
    except RedgraphError as exc:
        fail(exc)
    out.print_json(json.dumps(manifest))


@distill_app.command("adapt")
def distill_adapt(
    pictures: Annotated[Path, typer.Argument(help="Folder of your own pictures (images, PDF and TIFF documents); no "
                                                  "labels needed.")],
    out_dir: Annotated[Path, typer.Argument(help="Folder for the traces, the adapter and report.json; running again "
                                                 "on it resumes.")],
    questions: Annotated[Optional[Path], typer.Option(help="What to ask: a .txt file (one question a line, asked of "
                                                           "every picture) or .jsonl ({\"question\": ..., \"image\": "
                                                           "path in the folder} a line).")] = None,
    kind: Annotated[Optional[str], typer.Option(help="The pictures' kind, whose own questions the model is asked of "
                                                     "each: bars, document or shapes.")] = None,
    holdout: Annotated[float, typer.Option(help="Share of the pictures kept out of adaptation and measured on.")] = 0.2,
    style: Annotated[Optional[list[str]], typer.Option("--style", help="Prompt style of the traces (repeat); "
                                                                       "default: facts.")] = None,
    per_style: Annotated[int, typer.Option(help="Traces per style and question: the first greedy, the others "
                                                "sampled.")] = 4,
    limit: Annotated[int, typer.Option(help="At most this many questions to adapt on.")] = 5000,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="The local model to adapt (and the critic); "
                                                                       "default: the embedded model.")] = None,
    experts: Annotated[str, typer.Option(help="The critic's experts: lvlm (the model's own eyes), or lvlm,ocr (an OCR "
                                              "engine beside them: sure support on documents' text the model cannot "
                                              "read; pip install 'redgraph[ocr]' and Tesseract).")] = "lvlm",
    check: Annotated[Optional[str], typer.Option(help="A labelled check set (a dataset folder or file as `redgraph "
                                                      "eval` reads): accuracy there is reported too.")] = None,
    check_limit: Annotated[int, typer.Option(help="Items of the check set.")] = 200,
    steps: Annotated[int, typer.Option(help="Optimiser steps of the adapter.")] = 300,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate of the adapter.")] = 3e-3,
    threshold: Annotated[float, typer.Option(help="Traces weighing less are dropped.")] = 0.25,
    drop_unsure: Annotated[bool, typer.Option(help="Drop a trace the critic was sure of no claim of (else: weigh it "
                                                   "by agreement alone).")] = False,
    max_new_tokens: Annotated[int, typer.Option(help="Longest rationale or answer.")] = 64,
    adapter_kind: Annotated[str, typer.Option("--adapter-kind", help=KIND_HELP)] = "sdrt",
    layers: Annotated[Optional[str], typer.Option(help=LAYERS_HELP)] = None,
    rank: Annotated[int, typer.Option(help="The intervention's (or LoRA's) rank.")] = 4,
    skip_layer: Annotated[Optional[str], typer.Option(help=SKIP_HELP)] = None,
    vision_layers: Annotated[Optional[str], typer.Option(help=VISION_HELP)] = None,
    keep: Annotated[Optional[str], typer.Option(help=KEEP_HELP)] = None,
    keep_limit: Annotated[int, typer.Option(help=KEEP_LIMIT_HELP)] = 400,
    keep_share: Annotated[float, typer.Option(help=KEEP_SHARE_HELP)] = 0.25,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
) -> None:
    """From a folder of unlabelled pictures to an SDRT adapter and a report of what it changed on held-out ones."""
    machine_output(as_json)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from redgraph.distill.adapt import AdaptConfig, adapt
    from redgraph.distill.student import DistillConfig
    from redgraph.distill.weights import WeightConfig

    try:
        config = AdaptConfig(pictures=str(pictures), questions=None if questions is None else str(questions), kind=kind,
                             holdout=holdout, styles=tuple(style or ("facts",)), per_style=per_style, limit=limit,
                             model=model, experts=experts, check=check, check_limit=check_limit,
                             max_new_tokens=max_new_tokens,
                             distill=DistillConfig(steps=steps, learning_rate=learning_rate, keep=keep,
                                                   keep_limit=keep_limit, keep_share=keep_share,
                                                   adapter=_adapter(adapter_kind, layers, rank, skip_layer,
                                                                    vision_layers),
                                                   weighting=WeightConfig(threshold=threshold,
                                                                          unsure="drop" if drop_unsure else "ignore")))
        with console.status(f"loading {model or 'the embedded model'} ..."):
            lvlm = load_model(model)
        config = dataclasses.replace(config, distill=dataclasses.replace(
            config.distill, adapter=_fill_layers(config.distill.adapter, layers, vision_layers, lvlm)))
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, transient=True) as progress:
            tasks: dict[str, object] = {}

            def on_stage(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = progress.add_task(stage, total=total)
                progress.update(tasks[stage], completed=done, total=total)

            report = adapt(config, out_dir, lvlm=lvlm, on_stage=on_stage)
    except RedgraphError as exc:
        fail(exc)
    if as_json:
        out.print_json(json.dumps(report))
        return
    held = report["heldout"]
    out.print(f"adapter: {report['adapter']} ({report['pictures']['adapt_traces']} traces of "
              f"{report['pictures']['adapt_questions']} questions; {held['questions']} held-out questions)")
    for figure in ("self_agreement", "support", "unsure_share"):
        out.print(f"{figure}: base {held['base'][figure]} -> adapted {held['adapted'][figure]} "
                  f"(change {held['change'][figure]}, 95% {held['change'][figure + '_ci95']})")
    if "check" in report:
        check_report = report["check"]
        out.print(f"check-set accuracy: base {check_report['base']['accuracy']} -> adapted "
                  f"{check_report['adapted']['accuracy']} (change {check_report['change']}, "
                  f"95% {check_report['change_ci95']})")
