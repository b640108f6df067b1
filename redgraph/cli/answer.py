"""``redgraph decode``, ``ask`` and ``demo``: answers, through RED alone or the whole graph."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from redgraph.cli.app import app, command_name, console, fail, load_model, machine_output, out
from redgraph.errors import ConfigError, InputError, RedgraphError


@app.command()
def version() -> None:
    """Print the redgraph version."""
    from redgraph import __version__

    out.print(__version__)


@app.command()
def decode(
    image: Annotated[Path, typer.Argument(help="Image file (PNG, JPEG, WebP, GIF, BMP) or a PDF.")],
    question: Annotated[str, typer.Argument(help="The question about the image.")],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Local checkpoint folder or hub id; default: the embedded model.")] = None,
    page: Annotated[Optional[int], typer.Option(min=1, help="Of a PDF: the page to read (needed when it has several).")] = None,
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
    adapter: Annotated[Optional[str], typer.Option(help="An SDRT adapter folder to attach to the model.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Answer QUESTION about IMAGE with RED on a local model, showing what each token owed."""
    machine_output(as_json)
    from redgraph.decoding import REDConfig, REDDecoder

    try:
        document = check_inputs(image, question, rationale or (), page)
        config = REDConfig(
            rationale_weight=rationale_weight, max_new_tokens=max_new_tokens, do_sample=sample,
            temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, stop_strings=tuple(stop or ()),
        )
        with console.status(f"loading {model or 'the embedded model'} ..."):
            lvlm = load_model(model, dtype=dtype, device=device, trust_remote_code=trust_remote_code, adapter=adapter)
        if document is not None:
            from redgraph.models.documents import page_image

            image = page_image(document, page, lvlm, f"document {str(image)[:200]!r}")
        with console.status("decoding ..."):
            result = REDDecoder(lvlm, config).decode(image, question, rationale or ())
    except RedgraphError as exc:
        fail(exc)
    show_red_result(result, question, rationale or [], as_json)


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
    machine_output(as_json)
    from redgraph.graphs.demo import run_demo

    try:
        with console.status("starting ...") as shown:
            demo_run = run_demo(out_dir, model=model, rationale_weight=rationale_weight, on_status=shown.update)
    except RedgraphError as exc:
        fail(exc)
    runs = demo_run["runs"]
    if as_json:
        out.print_json(json.dumps(demo_run))
        return
    table = Table("run", "question", "expected", "answer", "rationale (by writer, support, status)", "outcome")
    for run in runs:
        # (No colon after the writer: rich reads ":chart:" in "readers:chart: ..." as an emoji code.)
        rationale = "; ".join(f"{r['text']} (by {r['model']}, {r['support']:.2f}, {r['status']})" for r in run["rationales"])
        answer = f"{run['answer']} (unsure)" if run["unsure"] else str(run["answer"])
        table.add_row(run["run"], escape(run["question"]), escape(run["expected"]), escape(answer),
                      escape(rationale), escape(", ".join([run["outcome"] or "", *run["flags"]])))
    out.print(table)
    for run in runs:
        if run["critiques"]:
            out.print(f"[bold]{escape(run['run'])}[/bold], the critic's last critique:\n{escape(run['critiques'][-1])}")
    out.print(f"traces and reports in {escape(str(out_dir))}/ (check one with: {escape(command_name())} trace verify "
              "FILE)")


@app.command()
def ask(
    image: Annotated[Path, typer.Argument(help="Image file (PNG, JPEG, WebP, GIF, BMP) or a PDF.")],
    question: Annotated[str, typer.Argument(help="The question about the image.")],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Checkpoint folder or hub id; default: the embedded model.")] = None,
    page: Annotated[Optional[int], typer.Option(min=1, help="Of a PDF: the page to ask; left out, every page is asked "
                                                            "(up to 20) and the answer names its page.")] = None,
    reasoner: Annotated[str, typer.Option(help="Who writes rationales: 'local' (the model above) or 'openai:MODEL'.")] = "local",
    base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible server for --reasoner openai:MODEL.")] = None,
    style: Annotated[Optional[list[str]], typer.Option("--style", help="Prompt-library style; repeat to rotate.")] = None,
    critic_scoring: Annotated[str, typer.Option(help="How the critic checks claims: probes (asks the image the "
                                                     "question behind each claim), p_yes or both.")] = "probes",
    decomposer: Annotated[str, typer.Option(help="Turns claims outside the synthetic grammar into questions: grammar "
                                                 "(none), lvlm (the local model) or openai:MODEL (at --base-url).")] = "grammar",
    experts: Annotated[str, typer.Option(help="Who checks the claims: lvlm (the model's own eyes) or lvlm,ocr (with an "
                                              "OCR expert for titles and fields: pip install 'redgraph[ocr]' and the "
                                              "tesseract program).")] = "lvlm",
    rationale_weight: Annotated[float, typer.Option("--lambda", help="RED weight of the accepted rationales.")] = 1.0,
    rationales: Annotated[int, typer.Option("--rationales", "-k", help="Rationales per round.")] = 1,
    rounds: Annotated[int, typer.Option(help="Most reasoning rounds before the policy applies.")] = 2,
    on_exhausted: Annotated[str, typer.Option(help="When no rationale is accepted after the last round: image_only (answer from the image "
                                                         "alone, flagged), best_supported or human_review.")] = "image_only",
    on_unsure: Annotated[str, typer.Option(help="When the image cannot tell whether a rationale holds: image_only "
                                                "(answer from the image, flagged unsure), rationale (use it at its "
                                                "support) or human_review.")] = "image_only",
    max_new_tokens: Annotated[int, typer.Option(help="Most answer tokens.")] = 16,
    checkpoint: Annotated[Optional[str], typer.Option(help="SQLite checkpoint file, 'memory', or a postgresql:// URL "
                                                                    "(pip install 'redgraph[postgres]').")] = None,
    thread: Annotated[Optional[str], typer.Option(help="Run id; an unfinished run of this id resumes.")] = None,
    resume: Annotated[Optional[str], typer.Option(help='Reply to a paused review, as JSON: {"use": [0]}, '
                                                       '{"rationales": ["..."]} or {"image_only": true}.')] = None,
    trace: Annotated[Optional[Path], typer.Option(help="Write the trace (JSON) here.")] = None,
    sign_key: Annotated[Optional[str], typer.Option(help="HMAC key to sign the trace; default: $REDGRAPH_TRACE_KEY.")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Write the HTML report here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Answer QUESTION about IMAGE through the graph: reasoner -> critic -> RED answerer, with a trace."""
    machine_output(as_json)
    from redgraph.graphs import ask as run_ask
    from redgraph.graphs import make_context
    from redgraph.data.files import check_writable
    from redgraph.graphs.storage import POSTGRES_SCHEMES
    from redgraph.trace.report import write_report

    try:
        try:
            reply = json.loads(resume) if resume is not None else None
        except (json.JSONDecodeError, RecursionError) as exc:  # RecursionError: nested past Python's limit
            raise ConfigError(f"--resume must be JSON such as '{{\"use\": [0]}}', got {resume!r:.120}: "
                              f"{exc if isinstance(exc, json.JSONDecodeError) else 'nested too deep'}") from None
        check_inputs(image, question, (), page)
        for path, what in ((trace, "trace"), (report, "report")):
            if path is not None:
                check_writable(path, what=what)  # before any model work: nothing is lost to a bad path
        if checkpoint not in (None, "memory") and not str(checkpoint).startswith(POSTGRES_SCHEMES):
            check_writable(checkpoint, what="checkpoint file", error=ConfigError)
        with console.status(f"loading {model or 'the embedded model'} ..."):
            context = make_context(model, reasoner=reasoner, styles=tuple(style) if style else None, base_url=base_url,
                                   critic_scoring=critic_scoring, decomposer=decomposer, experts=experts,
                                   rationale_weight=rationale_weight, rationales=rationales, rounds=rounds,
                                   on_exhausted=on_exhausted, on_unsure=on_unsure, max_new_tokens=max_new_tokens)
        from rich.progress import Progress

        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("reasoning, checking, answering ...", total=None)

            def page_done(number: int, pages: int, _) -> None:
                progress.update(task, description=f"asked page {number} of {pages}", completed=number, total=pages)

            result = run_ask(image, question, context, checkpoint=checkpoint, thread_id=thread, trace_path=trace,
                             resume=reply, sign_key=sign_key, page=page, on_page=page_done)
        if report is not None:
            write_report(result.state, result.trace, report)
    except RedgraphError as exc:
        fail(exc)
    if as_json:
        out.print_json(json.dumps(result.to_dict()))
        return
    out.print(f"[bold]Q:[/] {escape(question)}")
    for index, entry in enumerate(result.rationales):
        status = entry.get("status") or ("accepted" if entry["accepted"] else "rejected")
        mark = {"accepted": "[green]accepted[/]", "unsure": "[yellow]unsure[/]"}.get(status, f"[red]{status}[/]")
        out.print(f"[bold]rationale {index}[/] (by {escape(entry.get('model') or '?')}, {entry['style']}, support "
                  f"{entry['support']:.2f}, {mark}): {escape(entry['text'])}", emoji=False)
    if result.pending_review is not None:
        out.print(f"[yellow]paused for review[/]: {escape(result.pending_review['critique'])}")
        out.print(f"resume with: redgraph ask ... --thread {result.thread_id} --resume '{{\"use\": [0]}}' "
                  "(or rationales / image_only)")
        return
    shown = result.answer if result.answer and result.answer.strip() else "(nothing: the model gave an empty answer)"
    out.print(f"[bold]A:[/] {escape(shown)}   [dim]({result.outcome}; {', '.join(result.flags) or 'no flags'}; "
              f"thread {result.thread_id})[/]")
    if result.page is not None:
        why = f", chosen by {result.document['basis']}" if result.document else ""
        pages = (result.state.get("image") or {}).get("document", {}).get("pages")
        out.print(f"[bold]page:[/] {result.page} of {pages}{escape(why)}")
    for flag, why in UNSURE_REASONS.items():
        if flag in result.flags:
            out.print(f"[yellow]unsure:[/] {escape(why.format(readings=', '.join(result.summary().get('readings', []))))}")


# What `redgraph ask` says for each reason an answer is unsure (redgraph.graphs.run.UNSURE_FLAGS).
UNSURE_REASONS = {
    "image_unsure": "the image could not tell whether the rationale holds, and this answer is the image's own; "
                    "check it, or rerun with --on-unsure human_review",
    "picture_out_of_range_answered_from_image": "the picture is beyond what the model's eyes were calibrated on, and "
                                                "no accepted rationale speaks for this answer",
    "answer_differs_from_reading": "the answer is not what the readers read ({readings}); the model did not write it",
    "reader_failed": "a reader failed or is missing (named in the trace: redgraph trace show)",
    "empty_answer": "the model wrote no answer",
}


def show_red_result(result, question: str, rationales: list[str], as_json: bool) -> None:
    """A RED result as one JSON object (``answer`` and the result's record), or a table of its tokens."""
    if as_json:
        record = result.to_dict()
        out.print_json(json.dumps({"answer": record.pop("text"), **record}))
        return
    out.print(f"[bold]Q:[/] {escape(question)}")
    for index, text in enumerate(rationales):
        out.print(f"[bold]rationale {index}[/] (lambda {result.rationale_lambdas[index]:.3g}): {escape(text)}")
    shown = repr(result.text) if result.text.strip() else "(nothing: the model gave an empty answer)"
    out.print(f"[bold]A:[/] {escape(shown)}  ({result.finish_reason})")
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


def check_inputs(image: Path, question: str, rationales, page: int | None = None) -> bytes | None:
    """The image (or PDF and its page), question and rationales checked before any model loads (a
    typo costs no wait). Returns a PDF's bytes, None for an image."""
    from redgraph.data.files import read_regular_file
    from redgraph.errors import ImageError, check_question, check_rationale
    from redgraph.models.documents import is_document, open_document
    from redgraph.models.images import DEFAULT_MAX_FILE_BYTES, load_image

    check_question(question)
    for index, rationale in enumerate(rationales):
        check_rationale(rationale, index)
    data = read_regular_file(image, max_bytes=DEFAULT_MAX_FILE_BYTES, what="image file", error=ImageError)
    if is_document(data):
        with open_document(data, f"document {str(image)[:200]!r}") as document:
            if page is not None:
                document.check_page(page)
        return data
    if page is not None:
        raise InputError(f"--page is for documents (PDF, TIFF); {str(image)[:200]!r} is an image")
    load_image(data)
    return None
