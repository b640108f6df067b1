"""``redgraph eval run`` / ``merge``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from redgraph.cli.app import console, eval_app, fail, machine_output, out, parse_shard
from redgraph.errors import ConfigError, RedgraphError


@eval_app.command("run")
def eval_run(
    data: Annotated[Path, typer.Argument(help="Dataset folder or file: GQA-style JSONL, ScienceQA-style multiple "
                                              "choice, or a `redgraph data export` folder.")],
    out: Annotated[Path, typer.Argument(help="Output folder; running again on it resumes.")],
    mode: Annotated[list[str], typer.Option("--mode", help="direct, cot, red, red_multi, graph, critic (repeat).")] = None,
    source: Annotated[list[str], typer.Option("--source", help="Rationale source: self, gold, irrelevant, misleading, "
                                                               "lying, or file:PATH (repeat).")] = None,
    lambdas: Annotated[str, typer.Option("--lambdas", help="RED's lambda values, comma-separated.")] = "0,0.3,0.5,1,2",
    graph_lambda: Annotated[float, typer.Option(help="Lambda of the graph's answerer.")] = 1.0,
    rounds: Annotated[int, typer.Option(min=1, help="The graph's reasoning rounds.")] = 2,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 16,
    model: Annotated[Optional[str], typer.Option(help="Checkpoint path or hub id; default: the embedded model.")] = None,
    split: Annotated[Optional[str], typer.Option(help="Which {split}.jsonl of a folder with several.")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Only the first N items.")] = None,
    shard: Annotated[str, typer.Option(help="i/n: this process's share (every n-th item from the i-th); merge after. "
                                            "auto: the share a launcher gives (torchrun, accelerate launch), "
                                            "merged by process 0.")] = "0/1",
    device: Annotated[str, typer.Option(help="cpu or cuda (with --shard auto: each process its own GPU).")] = "cpu",
    critic_scoring: Annotated[str, typer.Option(help="How the critic checks claims: probes (asks the image), p_yes "
                                                     "or both.")] = "probes",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary object.")] = False,
) -> None:
    """Evaluate a dataset in several modes and rationale sources: predictions, summary, table, plots."""
    machine_output(as_json)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from redgraph.eval.plan import EvalConfig
    from redgraph.eval.runner import run_eval

    try:
        try:
            weights = tuple(float(x) for x in lambdas.split(",") if x.strip())
        except ValueError as exc:
            raise ConfigError(f"--lambdas must be numbers separated by commas, got {lambdas!r}") from exc
        launch = None
        if shard == "auto":
            from redgraph.eval.launch import device_for, from_environment

            launch = from_environment()
            index, count = launch.rank, launch.world_size
            device = device_for(device, launch)
        else:
            index, count = parse_shard(shard)
        config = EvalConfig(dataset=str(data), modes=tuple(mode or ("direct", "cot", "red")),
                            sources=tuple(source or ("gold",)), lambdas=weights, graph_lambda=graph_lambda,
                            rounds=rounds, max_new_tokens=max_new_tokens, model=model, split=split,
                            shard=(index, count), limit=limit, critic_scoring=critic_scoring)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task("evaluating", total=None)

            def run_shard(part: tuple[int, int], folder: Path) -> dict:
                return run_eval(dataclasses.replace(config, shard=part), folder, device=device,
                                on_progress=lambda done, total: progress.update(task, completed=done, total=total))

            if launch is None:
                summary = run_shard(config.shard, out)
            else:
                from redgraph.eval.launch import run_launched

                summary = run_launched(run_shard, out, launch)
    except RedgraphError as exc:
        fail(exc)
    if summary is None:
        console.print(f"shard {index}/{count} done in {escape(str(launch.folder(out)))}; process 0 merges the shards "
                      f"into {escape(str(out))}")
        return
    show_summary(summary, out, as_json)


@eval_app.command("merge")
def eval_merge(
    out: Annotated[Path, typer.Argument(help="New folder for the merged evaluation.")],
    shards: Annotated[list[Path], typer.Argument(help="The shards' output folders.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary object.")] = False,
) -> None:
    """Merge the output folders of `eval run --shard i/n` into one evaluation."""
    from redgraph.eval.merge import merge

    try:
        summary = merge(out, [str(s) for s in shards])
    except RedgraphError as exc:
        fail(exc)
    show_summary(summary, out, as_json)


def show_summary(summary: dict, folder: Path, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(summary))
        return
    from rich.markdown import Markdown

    out.print(Markdown((folder / "summary.md").read_text(encoding="utf-8")))
    console.print(f"predictions.jsonl, summary.json, summary.md and plots/ are in {escape(str(folder))}")
