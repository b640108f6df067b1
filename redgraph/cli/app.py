"""The ``redgraph`` command's Typer apps and what every command module shares: the consoles, model
loading and how errors end a command."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from redgraph.errors import ConfigError, InputError

# Plain help text, not rich markup: help that names an extra ('redgraph[postgres]') keeps its
# brackets, and a flag shows as a flag (rich mode printed "<bool>" beside it as if it took a value).
PLAIN = {"rich_markup_mode": None, "no_args_is_help": True}
app = typer.Typer(
    name="redgraph",
    help="Explainable vision-language answers with Rationale-Enhanced Decoding (RED).",
    add_completion=False,
    **PLAIN,
)
embedded_app = typer.Typer(help="The embedded default model: train it, evaluate it.", **PLAIN)
data_app = typer.Typer(help="Synthetic visual-reasoning data.", **PLAIN)
app.add_typer(embedded_app, name="embedded")
app.add_typer(data_app, name="data")
trace_app = typer.Typer(help="Check and read run traces.", **PLAIN)
app.add_typer(trace_app, name="trace")
eval_app = typer.Typer(help="Measure direct, CoT, RED and the graph on a dataset.", **PLAIN)
app.add_typer(eval_app, name="eval")
distill_app = typer.Typer(help="SDRT: write reasoning traces, distil them into an adapter.", **PLAIN)
app.add_typer(distill_app, name="distill")
console = Console(stderr=True)
out = Console()


def _print_version(value: bool) -> None:
    if value:
        from redgraph import __version__

        out.print(__version__)
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the redgraph version and exit."),
) -> None:
    """Explainable vision-language answers with Rationale-Enhanced Decoding (RED)."""


def load_model(model: str | None, *, dtype: str = "auto", device: str = "cpu", trust_remote_code: bool = False,
               adapter: str | None = None):
    """The named checkpoint, or the embedded model when none is named (with ``adapter`` attached).
    transformers' "Loading weights" bar stays off: the command shows its own status line."""
    import transformers.utils.logging

    from redgraph.models import load_lvlm

    transformers.utils.logging.disable_progress_bar()
    return load_lvlm(model, dtype=dtype, device=device, trust_remote_code=trust_remote_code, adapter=adapter)


def command_name() -> str:
    """How to run ``redgraph`` again from the user's shell, for hints: ``redgraph`` when that is on
    the PATH and is this program, else the path it was started by (``.venv/bin/redgraph`` before the
    environment is activated), or ``python -m redgraph.cli``."""
    import os
    import shutil
    import sys

    started = sys.argv[0] if sys.argv else ""
    if not started or started.endswith(("__main__.py", "-c")) or os.path.basename(started) != "redgraph":
        return f"{sys.executable} -m redgraph.cli"
    found = shutil.which("redgraph")
    if found is not None and os.path.realpath(found) == os.path.realpath(started):
        return "redgraph"
    return started


def machine_output(as_json: bool) -> None:
    """With ``--json``, stdout carries only the JSON: also keep transformers' progress bars off stderr."""
    if as_json:
        import transformers.utils.logging

        transformers.utils.logging.disable_progress_bar()


USAGE_EXIT = 2  # a value the user gave cannot be used (as Click exits on a bad option)
FAILURE_EXIT = 1  # the command ran and failed (a model that does not load, a remote model's error, ...)


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` as ``(i, n)`` (the range is checked by the configuration that takes it)."""
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like 0/4, got {text!r}") from None
    return index, count


def fail(exc: Exception) -> None:
    """End the command with the error's message (which names the value and the fix): exit code 2 for
    a value the user gave that cannot be used, 1 for a failure while running."""
    console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
    raise typer.Exit(code=USAGE_EXIT if isinstance(exc, (ConfigError, InputError)) else FAILURE_EXIT)
