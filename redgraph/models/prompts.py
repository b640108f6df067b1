"""Prompts per model family, rendered through the processor's own chat template.

Four prompts, one user turn each:

- image branch: image + question (also the *direct* baseline: the same prompt),
- rationale branch: rationale + question, no image,
- CoT: image + rationale + question in one sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

from redgraph.errors import InputError


@dataclass(frozen=True)
class PromptFormat:
    """How question and rationale are worded inside the user turn."""

    # Text after the image in the image-branch and direct prompts.
    question: str = "{question}"
    # The rationale branch and CoT share this wording, so the two compare like for like.
    with_rationale: str = "Rationale: {rationale}\nQuestion: {question}"


def check_question(question: object) -> str:
    if not isinstance(question, str):
        raise InputError(f"the question must be a string, got {type(question).__name__}: {question!r:.80}")
    if not question.strip():
        raise InputError(f"the question is empty ({question!r}); ask something about the image")
    return question


def check_rationale(rationale: object, index: int | None = None) -> str:
    which = "rationale" if index is None else f"rationale {index}"
    if not isinstance(rationale, str):
        raise InputError(f"{which} must be a string, got {type(rationale).__name__}: {rationale!r:.80}")
    if not rationale.strip():
        raise InputError(f"{which} is empty ({rationale!r}); pass the reasoning text, or decode without a rationale")
    return rationale


def user_turn(text: str, *, with_image: bool) -> list[dict]:
    content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": text}]
    return [{"role": "user", "content": content}]


def render(processor, text: str, *, with_image: bool) -> str:
    """The chat-template string of one user turn followed by the assistant's generation prompt."""
    return processor.apply_chat_template(user_turn(text, with_image=with_image), add_generation_prompt=True, tokenize=False)


def image_branch_text(processor, question: str, fmt: PromptFormat = PromptFormat()) -> str:
    return render(processor, fmt.question.format(question=check_question(question)), with_image=True)


def rationale_branch_text(processor, rationale: str, question: str, fmt: PromptFormat = PromptFormat()) -> str:
    text = fmt.with_rationale.format(rationale=check_rationale(rationale), question=check_question(question))
    return render(processor, text, with_image=False)


def cot_text(processor, rationale: str, question: str, fmt: PromptFormat = PromptFormat()) -> str:
    text = fmt.with_rationale.format(rationale=check_rationale(rationale), question=check_question(question))
    return render(processor, text, with_image=True)
