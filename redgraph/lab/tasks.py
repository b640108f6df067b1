"""The embedded model's training mixture: five tasks, drawn uniformly unless ``--task-weights`` says
otherwise, from synthetic items.

- ``answer``: image + question -> answer (RED's image branch, the direct baseline);
- ``rationale``: image + rationale request -> gold rationale (the local reasoner);
- ``cot``: image + gold rationale + question -> answer (plain multimodal chain-of-thought);
- ``rationale_answer``: gold rationale + question, no image -> answer (RED's rationale branch);
- ``verify``: image + one labelled claim -> yes / no (the local critic), true and false equally often;
- ``copy``: a reader's facts-style rationale about a document or bar chart + question, no image -> the
  answer, a verbatim span of the rationale (:mod:`.copy_task`: strings the standard vocabulary never
  has). Not drawn unless ``--task-weights`` names it (weight 0 otherwise, so the five tasks' draw
  stays as it was).

Every prompt is rendered by the same functions that build prompts at inference time
(:mod:`redgraph.models.prompts`), so the model is trained on exactly what it will be shown.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from PIL import Image

from redgraph.data.scenes import IMAGE_SIDE
from redgraph.data.synthetic import SyntheticItem
from redgraph.data.tools import Layout
from redgraph.data.vocabulary import STANDARD, Vocabulary
from redgraph.lab.architecture import CELL
from redgraph.lab.scene_labels import cell_labels, layout_cell_labels, scene_labels
from redgraph.models import prompts

TASKS = ("answer", "rationale", "cot", "rationale_answer", "verify", "copy")
# The tasks drawn before ``copy`` existed: a run's weights for these five alone mean copy weighs 0.
LEGACY_TASKS = TASKS[:5]


@dataclass(frozen=True)
class Example:
    task: str
    prompt: str  # chat-template text ending with the assistant's generation prompt
    image: Image.Image | None
    target: str  # what the assistant should write, without the end-of-turn token
    scene_labels: tuple[int, ...] = ()  # facts of the pictured scene (the auxiliary vision loss)
    cell_labels: tuple[tuple[int, ...], ...] = ()  # facts of each image token's square (the cell loss)
    # Characters [start, end) of the prompt whose tokens are also learned (the copy task's rationale: a
    # reader's text repeats its labels, so predicting it teaches copying); weighed by the run's
    # copy_prompt_weight. Empty: the target alone.
    prompt_span: tuple[int, int] | tuple[()] = ()


def make_example(item: SyntheticItem, task: str, processor, rng: random.Random,
                 picture: Image.Image | None = None, layout: Layout | None = None,
                 vocabulary: Vocabulary = STANDARD, image_side: int = IMAGE_SIDE, copy_short: float = 0.0) -> Example:
    """``task``'s example of ``item``, shown ``picture`` (another tool's drawing of the item's scene,
    or a degraded one) instead of the project's own drawing where given. The own drawing has cell
    labels, and so has another tool's drawing given with its ``layout`` (where that tool drew what); a
    picture without one (a degraded drawing) has none. The labels name the facts of ``vocabulary``
    (the run's; :mod:`redgraph.data.vocabulary`), one set per token of the grid the processor makes
    at ``image_side`` (the run's). ``copy_short``: the run's ``copy_short_share`` (the copy task only)."""
    if task == "copy":
        return copy_example(processor, rng, short=copy_short)
    example = _example(item, task, processor, rng, picture)
    if example.image is None:
        return example
    cells = (cell_labels(item.scene, CELL, vocabulary, image_side=image_side) if picture is None
             else layout_cell_labels(layout, CELL, vocabulary, pixels=image_side * image_side) if layout is not None
             else ())
    return dataclasses.replace(example, scene_labels=scene_labels(item.scene, vocabulary), cell_labels=cells)


def copy_example(processor, rng: random.Random, split: str = "train", short: float = 0.0) -> Example:
    """A ``copy`` example of the copy generator's ``split``, its item drawn by ``rng`` (``short``: the
    share cut to the answering sentence and 0-2 others; :func:`~redgraph.lab.copy_task.copy_item`)."""
    from redgraph.lab.copy_task import copy_item

    item = copy_item(split, rng.getrandbits(48), short=short)
    prompt = prompts.rationale_branch_text(processor, item.rationale, item.question)
    start = prompt.index(item.rationale)
    return Example("copy", prompt, None, item.answer, prompt_span=(start, start + len(item.rationale)))


def _example(item: SyntheticItem, task: str, processor, rng: random.Random, picture: Image.Image | None) -> Example:
    image = None if task == "rationale_answer" else picture if picture is not None else item.image()
    if task == "answer":
        return Example(task, prompts.image_branch_text(processor, item.question), image, item.answer)
    if task == "rationale":
        return Example(task, prompts.rationale_request_text(processor, item.question), image, item.gold_rationale)
    if task == "cot":
        text = prompts.cot_text(processor, item.gold_rationale, item.question)
        return Example(task, text, image, item.answer)
    if task == "rationale_answer":
        return Example(task, prompts.rationale_branch_text(processor, item.gold_rationale, item.question), None, item.answer)
    if task == "verify":
        label = rng.random() < 0.5
        pool = [claim for claim, truth in item.claims if truth == label] or [claim for claim, _ in item.claims]
        claim = rng.choice(pool)
        truth = dict(item.claims)[claim]
        return Example(task, prompts.claim_check_text(processor, claim), image, "yes" if truth else "no")
    raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
