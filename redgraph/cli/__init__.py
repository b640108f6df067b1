"""The ``redgraph`` command: one module per command group, all registered on one Typer app.

- :mod:`~redgraph.cli.answer`: ``decode``, ``ask``, ``demo``, ``version``
- :mod:`~redgraph.cli.embedded`: ``embedded train`` / ``evaluate``, ``data export``
- :mod:`~redgraph.cli.trace`: ``trace verify`` / ``show``
- :mod:`~redgraph.cli.eval`: ``eval run`` / ``merge``
- :mod:`~redgraph.cli.serve`: ``serve``, ``mcp``
- :mod:`~redgraph.cli.distill`: ``distill traces`` / ``train``
"""

from redgraph.cli import answer, distill, embedded, eval, serve, trace  # noqa: F401 (each registers its commands)
from redgraph.cli.app import app


def main() -> None:  # pragma: no cover - console-script entry point
    app()


__all__ = ["app", "main"]
