"""The rationale graph's state: TypedDicts, checkpointed after every node.

The state holds references and JSON data only: the image as sha256 + path, never bytes. Models
and settings live in the run context (:mod:`redgraph.graphs.context`), not here.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal

from typing_extensions import NotRequired, TypedDict  # pydantic (LangGraph server schemas) needs it before Python 3.12


class ImageRef(TypedDict):
    sha256: str  # of the decoded pixels (mode, size, bytes): the same picture in any file format
    path: str
    file_sha256: NotRequired[str]  # of the file the caller gave, as sha256sum prints it (none for a PIL image)


class Chosen(TypedDict):
    rationales: list[str]
    weights: list[float]


class GraphState(TypedDict, total=False):
    trace_id: str
    question: str
    image: ImageRef
    settings: dict[str, Any]  # the run's settings as its first step saw them; a resume keeps them
    round: int  # reasoning rounds done
    rationales: list[dict[str, Any]]  # this round's: text, style, model, analysis, sampled
    reviews: list[dict[str, Any]]  # the critic's, one per rationale: support, accepted, status, claims, injections
    verdict: Literal["accept", "revise", "unsure"]
    critique: str
    history: Annotated[list[dict[str, Any]], operator.add]  # one entry per round
    outcome: Literal["accepted", "unsure", "image_only", "best_supported", "human_review"]
    flags: list[str]
    chosen: Chosen  # what the answerer decodes with
    answer: dict[str, Any]
    trace: Annotated[list[dict[str, Any]], operator.add]  # hash-chained events
