"""The ``redgraph`` command.

Flags map one to one onto :class:`redgraph.decoding.REDConfig` fields.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from redgraph.errors import RedgraphError

app = typer.Typer(
    name="redgraph",
    help="Explainable vision-language answers with Rationale-Enhanced Decoding (RED).",
    no_args_is_help=True,
    add_completion=False,
)
embedded_app = typer.Typer(help="The embedded default model: train it, evaluate it.", no_args_is_help=True)
data_app = typer.Typer(help="Synthetic visual-reasoning data.", no_args_is_help=True)
app.add_typer(embedded_app, name="embedded")
app.add_typer(data_app, name="data")
trace_app = typer.Typer(help="Check and read run traces.", no_args_is_help=True)
app.add_typer(trace_app, name="trace")
eval_app = typer.Typer(help="Measure direct, CoT, RED and the graph on a dataset.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
console = Console(stderr=True)
out = Console()


def _load_model(model: str | None, *, dtype: str = "auto", device: str = "cpu", trust_remote_code: bool = False):
    """The named checkpoint, or the embedded model when none is named."""
    from redgraph.models import load_lvlm

    return load_lvlm(model, dtype=dtype, device=device, trust_remote_code=trust_remote_code)


@app.command()
def version() -> None:
    """Print the redgraph version."""
    from redgraph import __version__

    out.print(__version__)


@app.command()
def decode(
    image: Annotated[Path, typer.Argument(help="Image file (PNG, JPEG, ...).")],
    question: Annotated[str, typer.Argument(help="The question about the image.")],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Local checkpoint folder or hub id; default: the embedded model.")] = None,
    rationale: Annotated[Optional[list[str]], typer.Option("--rationale", "-r", help="A rationale; repeat for several.")] = None,
    rationale_weight: Annotated[float, typer.Option("--lambda", help="RED weight of the rationales (0 = ignore them).")] = 0.5,
    max_new_tokens: Annotated[int, typer.Option(help="Most answer tokens.")] = 32,
    sample: Annotated[bool, typer.Option("--sample/--greedy", help="Sample instead of greedy decoding.")] = False,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 1.0,
    top_k: Annotated[Optional[int], typer.Option(help="Sample among the k best tokens.")] = None,
    top_p: Annotated[Optional[float], typer.Option(help="Nucleus sampling mass.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for sampling.")] = None,
    stop: Annotated[Optional[list[str]], typer.Option("--stop", help="Stop string; repeat for several.")] = None,
    dtype: Annotated[str, typer.Option(help="auto, float32, float16 or bfloat16.")] = "auto",
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")] = "cpu",
    trust_remote_code: Annotated[bool, typer.Option(help="Run model code shipped with the checkpoint.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Answer QUESTION about IMAGE with RED on a local model, showing what each token owed."""
    from redgraph.decoding import REDConfig, REDDecoder

    try:
        config = REDConfig(
            rationale_weight=rationale_weight, max_new_tokens=max_new_tokens, do_sample=sample,
            temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, stop_strings=tuple(stop or ()),
        )
        with console.status(f"loading {model or 'the embedded model'} ..."):
            lvlm = _load_model(model, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
        with console.status("decoding ..."):
            result = REDDecoder(lvlm, config).decode(image, question, rationale or ())
    except RedgraphError as exc:
        _fail(exc)
    _show(result, question, rationale or [], as_json)


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for traces and reports.")] = Path("redgraph-demo"),
    rationale_weight: Annotated[float, typer.Option("--lambda", help="RED weight of accepted rationales.")] = 1.0,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Checkpoint folder; default: the embedded model.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run the whole graph on the bundled example images, offline, writing a trace and an HTML report
    per run; then once more with a reasoner that lies, to show what the critic makes of it: it asks
    the image the question behind each claim, and its critique says what the image answered (only as
    right as the model's eyes: see BENCHMARKS.md)."""
    import uuid

    from redgraph.agents import ScriptedReasoner
    from redgraph.examples import example_path, load_examples
    from redgraph.graphs import make_context
    from redgraph.graphs import ask as run_ask
    from redgraph.trace.report import write_report

    examples = load_examples()
    session = uuid.uuid4().hex[:8]
    runs = []
    try:
        with console.status(f"loading {model or 'the embedded model'} ..."):
            context = make_context(model, rationale_weight=rationale_weight, rounds=2, max_new_tokens=8)
        liar = ScriptedReasoner([examples[1]["misleading_rationale"]], name="planted-liar")
        lying = make_context(context.answerer, reasoner=liar, rationale_weight=rationale_weight, rounds=2,
                             on_exhausted="image_only", max_new_tokens=8)
        plan = [(example, context, example["image"].removesuffix(".png")) for example in examples]
        plan.append((examples[1], lying, "bars-lying-reasoner"))
        for example, run_context, name in plan:
            with console.status(f"{name}: reasoning, checking, answering ..."):
                result = run_ask(str(example_path(example)), example["question"], run_context,
                                 checkpoint=out_dir / "checkpoints.sqlite", thread_id=f"demo-{session}-{name}",
                                 trace_path=out_dir / f"{name}.trace.json")
            report = write_report(result.state, result.trace, out_dir / f"{name}.report.html")
            runs.append({"run": name, "question": example["question"], "expected": example["answer"],
                         "answer": result.answer, "rationales": result.rationales, "verdict": result.verdict,
                         "outcome": result.outcome, "flags": result.flags,
                         "critiques": [h["critique"] for h in result.state.get("history", []) if h.get("critique")],
                         "trace": str(out_dir / f"{name}.trace.json"), "report": str(report)})
    except RedgraphError as exc:
        _fail(exc)
    if as_json:
        out.print_json(json.dumps({"model": context.answerer.name, "lambda": rationale_weight, "runs": runs}))
        return
    table = Table("run", "question", "expected", "answer", "rationale (support)", "outcome")
    for run in runs:
        rationale = "; ".join(f"{r['text']} ({r['support']:.2f})" for r in run["rationales"])
        table.add_row(run["run"], escape(run["question"]), escape(run["expected"]), escape(str(run["answer"])),
                      escape(rationale), escape(", ".join([run["outcome"] or "", *run["flags"]])))
    out.print(table)
    for run in runs:
        if run["critiques"]:
            out.print(f"[bold]{escape(run['run'])}[/bold], the critic's last critique:\n{escape(run['critiques'][-1])}")
    out.print(f"traces and reports in {escape(str(out_dir))}/ (check one with: redgraph trace verify FILE)")


@app.command()
def ask(
    image: Annotated[Path, typer.Argument(help="Image file (PNG, JPEG, ...).")],
    question: Annotated[str, typer.Argument(help="The question about the image.")],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Checkpoint folder or hub id; default: the embedded model.")] = None,
    reasoner: Annotated[str, typer.Option(help="Who writes rationales: 'local' (the model above) or 'openai:MODEL'.")] = "local",
    base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible server for --reasoner openai:MODEL.")] = None,
    style: Annotated[Optional[list[str]], typer.Option("--style", help="Prompt-library style; repeat to rotate.")] = None,
    critic_scoring: Annotated[str, typer.Option(help="How the critic checks claims: probes (asks the image the "
                                                     "question behind each claim), p_yes or both.")] = "probes",
    decomposer: Annotated[str, typer.Option(help="Turns claims outside the synthetic grammar into questions: grammar "
                                                 "(none), lvlm (the local model) or openai:MODEL (at --base-url).")] = "grammar",
    rationale_weight: Annotated[float, typer.Option("--lambda", help="RED weight of the accepted rationales.")] = 1.0,
    rationales: Annotated[int, typer.Option("--rationales", "-k", help="Rationales per round.")] = 1,
    rounds: Annotated[int, typer.Option(help="Most reasoning rounds before the policy applies.")] = 2,
    on_exhausted: Annotated[str, typer.Option(help="image_only, best_supported or human_review.")] = "best_supported",
    max_new_tokens: Annotated[int, typer.Option(help="Most answer tokens.")] = 16,
    checkpoint: Annotated[Optional[str], typer.Option(help="SQLite checkpoint file, or 'memory'.")] = None,
    thread: Annotated[Optional[str], typer.Option(help="Run id; an unfinished run of this id resumes.")] = None,
    resume: Annotated[Optional[str], typer.Option(help='Reply to a paused review, as JSON: {"use": [0]}, '
                                                       '{"rationales": ["..."]} or {"image_only": true}.')] = None,
    trace: Annotated[Optional[Path], typer.Option(help="Write the trace (JSON) here.")] = None,
    sign_key: Annotated[Optional[str], typer.Option(help="HMAC key to sign the trace; default: $REDGRAPH_TRACE_KEY.")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Write the HTML report here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Answer QUESTION about IMAGE through the graph: reasoner -> critic -> RED answerer, with a trace."""
    from redgraph.graphs import ask as run_ask
    from redgraph.graphs import make_context
    from redgraph.trace.report import write_report

    try:
        try:
            reply = json.loads(resume) if resume is not None else None
        except json.JSONDecodeError as exc:
            raise RedgraphError(f"--resume must be JSON such as '{{\"use\": [0]}}', got {resume!r}: {exc}") from exc
        with console.status(f"loading {model or 'the embedded model'} ..."):
            context = make_context(model, reasoner=reasoner, styles=tuple(style) if style else None, base_url=base_url,
                                   critic_scoring=critic_scoring, decomposer=decomposer, rationale_weight=rationale_weight, rationales=rationales, rounds=rounds,
                                   on_exhausted=on_exhausted, max_new_tokens=max_new_tokens)
        with console.status("reasoning, checking, answering ..."):
            result = run_ask(image, question, context, checkpoint=checkpoint, thread_id=thread, trace_path=trace,
                             resume=reply, sign_key=sign_key)
    except RedgraphError as exc:
        _fail(exc)
    if report is not None:
        write_report(result.state, result.trace, report)
    if as_json:
        out.print_json(json.dumps(result.to_dict()))
        return
    out.print(f"[bold]Q:[/] {escape(question)}")
    for index, entry in enumerate(result.rationales):
        mark = "[green]accepted[/]" if entry["accepted"] else "[red]rejected[/]"
        out.print(f"[bold]rationale {index}[/] ({entry['style']}, support {entry['support']:.2f}, {mark}): "
                  f"{escape(entry['text'])}")
    if result.pending_review is not None:
        out.print(f"[yellow]paused for review[/]: {escape(result.pending_review['critique'])}")
        out.print(f"resume with: redgraph ask ... --thread {result.thread_id} --resume '{{\"use\": [0]}}' "
                  "(or rationales / image_only)")
        return
    out.print(f"[bold]A:[/] {escape(str(result.answer))}   [dim]({result.outcome}; {', '.join(result.flags) or 'no flags'}; "
              f"thread {result.thread_id})[/]")


@embedded_app.command("train")
def embedded_train(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the checkpoint to.")],
    steps: Annotated[int, typer.Option(help="Optimiser steps (the shipped model: see its manifest).")] = 2000,
    seed: Annotated[int, typer.Option(help="Seeds weights, data and task choice.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = 32,
    threads: Annotated[int, typer.Option(help="CPU threads; results reproduce for a fixed count.")] = 2,
    aux_weight: Annotated[float, typer.Option(help="Weight of the auxiliary scene-fact loss on the image tokens (0: none).")] = 0.0,
    task_weights: Annotated[Optional[str], typer.Option(help="How often each task is drawn, e.g. 'verify=3,cot=0.5' "
                                                          "(tasks not named: 1). Default: uniform.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the stopped run saved in OUT_DIR (same settings); it ends "
                                              "with the weights an uninterrupted run gives.")] = False,
) -> None:
    """Train the embedded model from scratch on CPU; same seed and threads give the same weights."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from redgraph.lab.train import TrainConfig, parse_task_weights, train

    try:
        weights = {} if task_weights is None else {"task_weights": parse_task_weights(task_weights)}
        config = TrainConfig(steps=steps, seed=seed, batch_size=batch_size, threads=threads, aux_weight=aux_weight,
                             **weights)
    except RedgraphError as exc:
        _fail(exc)
    columns = (TextColumn("training"), BarColumn(), TextColumn("{task.completed}/{task.total} loss {task.fields[loss]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("train", total=steps, loss="-")
            _, manifest = train(out_dir, config, resume=resume, on_progress=lambda step, loss: progress.update(
                task, completed=step, loss=f"{loss:.3f}"))
    except RedgraphError as exc:
        _fail(exc)
    out.print_json(json.dumps(manifest))


@embedded_app.command("evaluate")
def embedded_evaluate(
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Checkpoint folder; default: the embedded model.")] = None,
    split: Annotated[str, typer.Option(help="train, validation or test.")] = "test",
    limit: Annotated[int, typer.Option(help="Items to evaluate.")] = 600,
    seed: Annotated[int, typer.Option(help="Generator seed of the items.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Held-out accuracy: answers from the image, from the gold rationale, rationale facts, claim checks."""
    from rich.progress import Progress

    from redgraph.lab.evaluate import METRICS, evaluate

    try:
        with console.status(f"loading {model or 'the embedded model'} ..."):
            lvlm = _load_model(model)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("evaluating", total=limit)
            summary = evaluate(lvlm, split=split, limit=limit, seed=seed,
                               on_progress=lambda done, total: progress.update(task, completed=done))
    except RedgraphError as exc:
        _fail(exc)
    if as_json:
        out.print_json(json.dumps(summary))
        return
    table = Table("kind", *METRICS)
    for kind, row in [*summary["per_kind"].items(), ("overall", summary["overall"])]:
        table.add_row(kind, *[f"{row.get(m, float('nan')):.3f}" for m in METRICS])
    out.print(table)


@data_app.command("export")
def data_export(
    out_dir: Annotated[Path, typer.Argument(help="Folder for {split}.jsonl and images/.")],
    train: Annotated[int, typer.Option(min=0, help="Train items (0: no train file).")] = 3000,
    validation: Annotated[int, typer.Option(min=0, help="Validation items (0: no validation file).")] = 300,
    test: Annotated[int, typer.Option(min=0, help="Test items (0: no test file).")] = 600,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 0,
) -> None:
    """Write the synthetic dataset as GQA-style JSONL + PNG images, with fixed splits."""
    from redgraph.data import export_dataset

    try:
        counts = {"train": train, "validation": validation, "test": test}
        written = export_dataset(out_dir, {split: n for split, n in counts.items() if n > 0}, seed=seed)
    except RedgraphError as exc:
        _fail(exc)
    for split, path in written.items():
        out.print(f"{split}: {path}")


@trace_app.command("verify")
def trace_verify(
    file: Annotated[Path, typer.Argument(help="A trace file written by redgraph.")],
    key: Annotated[Optional[str], typer.Option(help="HMAC key; default: the REDGRAPH_TRACE_KEY variable.")] = None,
) -> None:
    """Exit 0 when the trace is intact (and, with a key, its signature valid); else 1, naming the first bad event."""
    import os

    from redgraph.trace import KEY_ENV, verify_text

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(RedgraphError(f"cannot read trace file {file}: {exc}"))
    result = verify_text(text, key if key is not None else os.environ.get(KEY_ENV))
    if result.ok:
        out.print(f"[green]ok[/]: {escape(str(file))}: {escape(result.reason)}")
        return
    console.print(f"[red]tampered[/]: {escape(str(file))}: {escape(result.reason)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code=1)


@trace_app.command("show")
def trace_show(file: Annotated[Path, typer.Argument(help="A trace file written by redgraph.")]) -> None:
    """Print a trace's events, one row each."""
    from pydantic import ValidationError

    from redgraph.trace import TraceFile

    try:
        trace = TraceFile.model_validate_json(file.read_bytes())
    except (OSError, ValidationError) as exc:
        _fail(RedgraphError(f"cannot read trace file {file}: {exc}"))
    table = Table("#", "node", "kind", "time", "outputs", title=f"trace {escape(trace.trace_id)}")
    for event in trace.events:
        table.add_row(str(event.index), event.node, event.kind, event.time, escape(json.dumps(event.outputs)[:120]))
    out.print(table)


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
    shard: Annotated[str, typer.Option(help="i/n: this process's share (every n-th item from the i-th); merge after.")] = "0/1",
    critic_scoring: Annotated[str, typer.Option(help="How the critic checks claims: probes (asks the image), p_yes "
                                                     "or both.")] = "probes",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary object.")] = False,
) -> None:
    """Evaluate a dataset in several modes and rationale sources: predictions, summary, table, plots."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from redgraph.eval.plan import EvalConfig
    from redgraph.eval.runner import run_eval

    try:
        try:
            weights = tuple(float(x) for x in lambdas.split(",") if x.strip())
        except ValueError as exc:
            raise RedgraphError(f"--lambdas must be numbers separated by commas, got {lambdas!r}") from exc
        try:
            index, count = (int(x) for x in shard.split("/"))
        except ValueError as exc:
            raise RedgraphError(f"--shard must look like 0/4, got {shard!r}") from exc
        config = EvalConfig(dataset=str(data), modes=tuple(mode or ("direct", "cot", "red")),
                            sources=tuple(source or ("gold",)), lambdas=weights, graph_lambda=graph_lambda,
                            rounds=rounds, max_new_tokens=max_new_tokens, model=model, split=split,
                            shard=(index, count), limit=limit, critic_scoring=critic_scoring)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task("evaluating", total=None)
            summary = run_eval(config, out, on_progress=lambda done, total: progress.update(task, completed=done, total=total))
    except RedgraphError as exc:
        _fail(exc)
    _show_summary(summary, out, as_json)


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
        _fail(exc)
    _show_summary(summary, out, as_json)


def _show_summary(summary: dict, folder: Path, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(summary))
        return
    from rich.markdown import Markdown

    out.print(Markdown((folder / "summary.md").read_text(encoding="utf-8")))
    console.print(f"predictions.jsonl, summary.json, summary.md and plots/ are in {escape(str(folder))}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on; anything but loopback needs an API key.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    model: Annotated[Optional[str], typer.Option(help="Checkpoint path or hub id; default: the embedded model.")] = None,
    api_key: Annotated[Optional[str], typer.Option(envvar="REDGRAPH_API_KEY", show_envvar=True,
                                                   help="Require 'Authorization: Bearer KEY' on every /v1 request.")] = None,
    model_name: Annotated[Optional[str], typer.Option(help="Name clients send as 'model' (default: the model's name).")] = None,
    allow_remote_images: Annotated[bool, typer.Option(help="Fetch http(s) image URLs (refused by default).")] = False,
    max_batch: Annotated[int, typer.Option(min=1, help="Most chat requests decoded together.")] = 8,
    max_pending: Annotated[int, typer.Option(min=1, help="Most chat requests waiting or decoding; more get 503.")] = 32,
    max_body_mb: Annotated[float, typer.Option(min=0.01, help="Largest request body, in MiB.")] = 16.0,
) -> None:
    """Serve the model over HTTP: OpenAI-compatible chat completions (RED with a 'rationale' field) and the graph."""
    try:
        try:
            import uvicorn

            from redgraph.serve import ServerSettings, check_bind, create_app
        except ImportError as exc:
            raise RedgraphError(f"the server needs FastAPI and uvicorn ({exc}); install them: pip install 'redgraph[serve]'") from exc
        check_bind(host, api_key)
        settings = ServerSettings(model_name=model_name, api_key=api_key, allow_remote_images=allow_remote_images,
                                  max_batch=max_batch, max_pending=max_pending, max_body_bytes=int(max_body_mb * 1024 * 1024))
        with console.status("loading the model"):
            lvlm = _load_model(model)
        application = create_app(lvlm, settings)
    except RedgraphError as exc:
        _fail(exc)
    console.print(f"serving [bold]{escape(application.state.model_name)}[/] on http://{escape(host)}:{port}/v1"
                  + ("" if api_key else " (no API key: loopback only)"))
    uvicorn.run(application, host=host, port=port, log_level="warning")


@app.command()
def mcp(
    model: Annotated[Optional[str], typer.Option(help="Checkpoint path or hub id; default: the embedded model.")] = None,
    trace_dir: Annotated[Optional[Path], typer.Option(help="Where ask_image saves traces; default: REDGRAPH_HOME/traces.")] = None,
) -> None:
    """Run the MCP server over stdio (tools: ask_image, verify_trace)."""
    try:
        try:
            from redgraph.tools.mcp import build_server
        except ImportError as exc:
            raise RedgraphError(f"the MCP server needs the mcp package ({exc}); install it: pip install 'redgraph[mcp]'") from exc
        server = build_server(model, trace_dir=trace_dir)
    except RedgraphError as exc:
        _fail(exc)
    server.run("stdio")


def _as_dict(result) -> dict:
    return {
        "answer": result.text,
        "finish_reason": result.finish_reason,
        "rationale_lambdas": list(result.rationale_lambdas),
        "changed_tokens": result.changed_tokens,
        "rationale_dependence": result.rationale_dependence,
        "tokens": [asdict(t) for t in result.tokens],
    }


def _show(result, question: str, rationales: list[str], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(_as_dict(result)))
        return
    out.print(f"[bold]Q:[/] {escape(question)}")
    for index, text in enumerate(rationales):
        out.print(f"[bold]rationale {index}[/] (lambda {result.rationale_lambdas[index]:.3g}): {escape(text)}")
    out.print(f"[bold]A:[/] {escape(repr(result.text))}  ({result.finish_reason})")
    table = Table("token", "log p image", *[f"log p r{k}" for k in range(len(rationales))], "RED log p", "changed")
    for token in result.tokens:
        table.add_row(
            repr(token.text),
            f"{token.image_logprob:.3f}",
            *[f"{lp:.3f}" for lp in token.rationale_logprobs],
            f"{token.logprob:.3f}",
            "yes" if token.changed_by_rationale else "",
        )
    out.print(table)


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
    raise typer.Exit(code=2)


def main() -> None:  # pragma: no cover - console-script entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
