"""The reasoner's prompt library: diverse reasoning styles, each one or two steps.

Two-step styles (the SDRT ones) first ask for an analysis without an answer, then for the
rationale written from that analysis. Every style takes an optional critique from an earlier round,
which asks the reasoner to revise. ``facts`` is the wording the embedded model was trained on.

Example:
    >>> style = STYLES["decompose"]
    >>> style.two_step
    True
    >>> "Question: How many bars?" in style.analysis_prompt("How many bars?")
    True
"""

from __future__ import annotations

from dataclasses import dataclass

from redgraph.errors import ConfigError, check_question
from redgraph.models.prompts import PromptFormat

_REVISION = (
    "\nA reviewer checked your previous rationale against the image and found problems:\n{critique}\n"
    "Write the rationale again, stating only what the image shows."
)
_NO_ANSWER = "Do not give the final answer."


@dataclass(frozen=True)
class PromptStyle:
    """One way of asking for a rationale.

    Attributes:
        name: the style's key in :data:`STYLES`, recorded with every rationale.
        rationale: the (last-step) instruction; ``{question}``, and ``{analysis}`` in two-step styles.
        analysis: the first step of a two-step style (``{question}``), or None.
    """

    name: str
    rationale: str
    analysis: str | None = None

    @property
    def two_step(self) -> bool:
        return self.analysis is not None

    def analysis_prompt(self, question: str) -> str:
        if self.analysis is None:
            raise ConfigError(f"prompt style {self.name!r} has one step; call rationale_prompt directly")
        return self.analysis.format(question=check_question(question))

    def rationale_prompt(self, question: str, *, analysis: str | None = None, critique: str | None = None) -> str:
        """The instruction for the rationale, with the analysis (two-step) and any critique filled in."""
        if self.two_step and not (analysis and analysis.strip()):
            raise ConfigError(f"prompt style {self.name!r} is two-step: pass the analysis from analysis_prompt")
        text = self.rationale.format(question=check_question(question), analysis=(analysis or "").strip())
        if critique and critique.strip():
            text += _REVISION.format(critique=critique.strip())
        return text


STYLES: dict[str, PromptStyle] = {
    style.name: style
    for style in (
        PromptStyle("facts", PromptFormat().rationale_request),
        PromptStyle(
            "step_by_step",
            "Look at the image and reason step by step about what it shows that bears on the question. "
            f"Write the steps as short factual sentences. {_NO_ANSWER}\nQuestion: {{question}}",
        ),
        PromptStyle(
            "scene_graph",
            "Describe the image as a scene graph in JSON with keys \"objects\" (name and attributes) and "
            "\"relations\" (subject, relation, object), listing only what matters for the question. Then state "
            f"in one or two sentences the facts the graph gives. {_NO_ANSWER}\nQuestion: {{question}}",
        ),
        PromptStyle(
            "decompose",
            "From your analysis below, write the facts about those objects and regions that answer the "
            "question, as short sentences.\nAnalysis: {analysis}\nQuestion: {question}",
            analysis="List the objects and regions of the image that are relevant to the question, with their "
                     f"attributes and positions. {_NO_ANSWER}\nQuestion: {{question}}",
        ),
        PromptStyle(
            "plan",
            "Follow the reasoning path below against the image and write each step's finding as a short "
            "sentence.\nReasoning path: {analysis}\nQuestion: {question}",
            analysis="Plan how to answer the question from the image as a path of knowledge triplets "
                     f"(subject, relation, object), one per line. {_NO_ANSWER}\nQuestion: {{question}}",
        ),
        PromptStyle(
            "text_layout",
            "From the text and layout below, write the facts that answer the question, as short sentences "
            "quoting the text exactly.\nText and layout: {analysis}\nQuestion: {question}",
            analysis="Transcribe the text in the image and describe its layout (titles, fields and their values, "
                     f"where each is). {_NO_ANSWER}\nQuestion: {{question}}",
        ),
    )
}


def get_style(name: str) -> PromptStyle:
    try:
        return STYLES[name]
    except KeyError:
        raise ConfigError(f"unknown prompt style {name!r}; choose one of {', '.join(STYLES)}") from None
