"""The demo behind ``redgraph demo``: the whole graph on the bundled example images, then once more
with a reasoner that lies, each run leaving a verifiable trace and an HTML report.

Example:
    >>> demo = run_demo("redgraph-demo")  # doctest: +SKIP
    >>> [(run["run"], run["answer"], run["outcome"]) for run in demo["runs"]]  # doctest: +SKIP
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

LYING_RUN = "bars-lying-reasoner"
# The user's pictures among the examples (drawn by matplotlib and as a PDF in a real font, which the
# model never trained on): the readers write there, and a planted liar is caught there too.
USERS_PICTURES = ("sales_chart.png", "receipt.pdf")


def run_demo(
    out_dir: str | os.PathLike[str],
    *,
    model: Any = None,
    rationale_weight: float = 1.0,
    on_status: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the graph on each bundled example (the model's own pictures, then a matplotlib chart and a
    receipt PDF, where the readers write) and with a planted liar on a bar chart of each kind; write
    traces and reports.

    Args:
        out_dir: where ``NAME.trace.json``, ``NAME.report.html`` and the checkpoints go.
        model: a checkpoint folder or loaded model; None for the embedded model.
        rationale_weight: RED's lambda for accepted rationales.
        on_status: told what is happening (``"loading ..."``, ``"bars: reasoning ..."``).

    Returns:
        ``{"model", "lambda", "runs"}``; each run has its name, question, expected and given answer,
        the ask summary (rationales with support, verdict, outcome, flags), the critiques of each
        round, and the trace and report paths.
    """
    from redgraph.agents.scripted import ScriptedReasoner
    from redgraph.examples import example_path, load_examples
    from redgraph.graphs.context import make_context
    from redgraph.graphs.run import ask
    from redgraph.trace.report import write_report

    def status(text: str) -> None:
        if on_status is not None:
            on_status(text)

    folder = Path(out_dir)
    examples = load_examples()
    session = uuid.uuid4().hex[:8]
    status(f"loading {model or 'the embedded model'} ...")
    context = make_context(model, rationale_weight=rationale_weight, rounds=2, max_new_tokens=8)
    liar = ScriptedReasoner([examples[1]["misleading_rationale"]], name="planted-liar")
    lying = make_context(context.answerer, reasoner=liar, rationale_weight=rationale_weight, rounds=2, max_new_tokens=8)
    plan = [(example, context, Path(example["image"]).stem) for example in examples]
    plan.append((examples[1], lying, LYING_RUN))
    chart = next(example for example in examples if example["image"] == USERS_PICTURES[0])
    users_liar = ScriptedReasoner([chart["misleading_rationale"]], name="planted-liar")
    plan.append((chart, make_context(context.answerer, reasoner=users_liar, rationale_weight=rationale_weight, rounds=2,
                                     max_new_tokens=8), f"{Path(chart['image']).stem}-lying-reasoner"))
    runs = []
    for example, run_context, name in plan:
        status(f"{name}: reasoning, checking, answering ...")
        trace = folder / f"{name}.trace.json"
        result = ask(str(example_path(example)), example["question"], run_context,
                     checkpoint=folder / "checkpoints.sqlite", thread_id=f"demo-{session}-{name}", trace_path=trace)
        report = write_report(result.state, result.trace, folder / f"{name}.report.html")
        runs.append({"run": name, "question": example["question"], "expected": example["answer"], **result.summary(),
                     "critiques": [h["critique"] for h in result.state.get("history", []) if h.get("critique")],
                     "trace": str(trace), "report": str(report)})
    return {"model": context.answerer.name, "lambda": rationale_weight, "runs": runs}
