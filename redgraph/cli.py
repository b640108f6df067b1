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
console = Console(stderr=True)
out = Console()


@app.command()
def version() -> None:
    """Print the redgraph version."""
    from redgraph import __version__

    out.print(__version__)


@app.command()
def decode(
    image: Annotated[Path, typer.Argument(help="Image file (PNG, JPEG, ...).")],
    question: Annotated[str, typer.Argument(help="The question about the image.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Local checkpoint folder or hub id.")],
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
    from redgraph.models import load_lvlm

    try:
        config = REDConfig(
            rationale_weight=rationale_weight, max_new_tokens=max_new_tokens, do_sample=sample,
            temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, stop_strings=tuple(stop or ()),
        )
        with console.status(f"loading {model} ..."):
            lvlm = load_lvlm(model, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
        with console.status("decoding ..."):
            result = REDDecoder(lvlm, config).decode(image, question, rationale or ())
    except RedgraphError as exc:
        _fail(exc)
    _show(result, question, rationale or [], as_json)


@app.command()
def demo(
    rationale_weight: Annotated[float, typer.Option("--lambda", help="RED weight of the rationale.")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run RED end to end on a generated image, offline.

    Until the embedded model ships, this uses a tiny *randomly initialised* Qwen2-VL: the answer
    text is noise, but every part of the engine runs, and the table shows per token what the image
    branch and the rationale branch each said.
    """
    from PIL import Image, ImageDraw

    from redgraph.decoding import REDConfig, REDDecoder
    from redgraph.models import build_tiny_lvlm

    picture = Image.new("RGB", (96, 64), "white")
    draw = ImageDraw.Draw(picture)
    draw.ellipse((8, 16, 40, 48), fill="red")
    draw.rectangle((56, 16, 88, 48), fill="blue")
    question = "What colour is the circle?"
    rationale = "There is a red circle on the left and a blue square on the right."
    with console.status("building a tiny random Qwen2-VL ..."):
        lvlm = build_tiny_lvlm("qwen2_vl")
    console.print("[yellow]demo model: tiny Qwen2-VL with random weights; answers are noise until the embedded model ships[/]")
    results = {}
    for weight in (0.0, rationale_weight):
        config = REDConfig(rationale_weight=weight, max_new_tokens=8)
        results[weight] = REDDecoder(lvlm, config).decode(picture, question, [rationale])
    if as_json:
        out.print_json(json.dumps({f"lambda={w}": _as_dict(r) for w, r in results.items()}))
        return
    for weight, result in results.items():
        out.rule(f"lambda = {weight}")
        _show(result, question, [rationale], False)


def _as_dict(result) -> dict:
    return {
        "answer": result.text,
        "finish_reason": result.finish_reason,
        "rationale_lambdas": list(result.rationale_lambdas),
        "changed_tokens": result.changed_tokens,
        "tokens": [asdict(t) for t in result.tokens],
    }


def _show(result, question: str, rationales: list[str], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(_as_dict(result)))
        return
    out.print(f"[bold]Q:[/] {question}")
    for index, text in enumerate(rationales):
        out.print(f"[bold]rationale {index}[/] (lambda {result.rationale_lambdas[index]:.3g}): {text}")
    out.print(f"[bold]A:[/] {result.text!r}  ({result.finish_reason})")
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
