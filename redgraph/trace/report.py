"""The HTML report of a run: the image, the rationales with their claims coloured by the critic's
verdict, the answer with each token shaded by what it owed to rationale vs image, the revision
history and the trace. Rendered with jinja2 (autoescaped: rationale text cannot inject markup)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from redgraph.trace.chain import Trace, verify_text


def _colour(delta: float) -> str:
    """Orange for tokens the rationale made likelier, blue for ones the image favoured more."""
    strength = min(abs(delta), 3.0) / 3.0
    red, green, blue = (255, 170, 60) if delta > 0 else (90, 150, 255)
    alpha = 0.15 + 0.6 * strength
    return f"rgba({red}, {green}, {blue}, {alpha:.2f})"


def render_report(state: dict, trace: Trace) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("redgraph.trace", "."), autoescape=select_autoescape(["j2", "html"]))
    answer = state.get("answer")
    if answer:
        answer = dict(answer)
        answer["tokens"] = [dict(t, colour=_colour(t["logprob"] - t["image_logprob"])) for t in answer["tokens"]]
    image = state.get("image") or {"sha256": "", "path": ""}
    image_data = None
    if image.get("path") and os.path.isfile(image["path"]):
        image_data = base64.b64encode(Path(image["path"]).read_bytes()).decode()
    checked = verify_text(trace.to_json())
    choice = next((event.outputs for event in trace.events if event.kind == "page_choice"), None)  # a PDF's pages
    settings = next((event.config for event in trace.events if event.kind == "input"), None) or {}
    return env.get_template("report.html.j2").render(
        question=state.get("question", ""), trace_id=trace.trace_id, events=len(trace.events), chain_ok=checked.ok,
        signed=trace.signature is not None, image=image, image_data=image_data, answer=answer,
        outcome=state.get("outcome"), flags=state.get("flags", []), history=state.get("history", []),
        trace=[e.model_dump(mode="json") for e in trace.events], choice=choice,
        experts=settings.get("experts") or [], combine=settings.get("combine"),
    )


def write_report(state: dict, trace: Trace, path: str | os.PathLike[str]) -> Path:
    """Write the run's HTML report to ``path`` (atomically, a regular file only)."""
    from redgraph.data.files import write_file

    return Path(write_file(path, render_report(state, trace), what="report"))
