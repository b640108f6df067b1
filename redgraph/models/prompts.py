"""Prompts per model family, rendered through the processor's own chat template.

Prompts, one user turn each:

- image branch: image + question (also the *direct* baseline: the same prompt),
- rationale branch: rationale + question, no image,
- CoT: image + rationale + question in one sequence,
- rationale request: image + question, asking for the facts that answer it (the reasoner),
- claim check: image + one statement, asking yes or no (the critic).
"""

from __future__ import annotations

from dataclasses import dataclass

from redgraph.errors import InputError, check_question, check_rationale


@dataclass(frozen=True)
class PromptFormat:
    """How question and rationale are worded inside the user turn."""

    # Text after the image in the image-branch and direct prompts.
    question: str = "{question}"
    # The rationale branch and CoT share this wording, so the two compare like for like.
    with_rationale: str = "Rationale: {rationale}\nQuestion: {question}"
    # Asks for a rationale: the facts in the image that answer the question, without the answer.
    rationale_request: str = "State the facts in the image that answer the question.\nQuestion: {question}"
    # Asks whether one statement about the image holds; the reply is "yes" or "no".
    claim_check: str = "Is this statement about the image true? Answer yes or no.\nStatement: {claim}"


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


def rationale_request_text(processor, question: str, fmt: PromptFormat = PromptFormat()) -> str:
    return render(processor, fmt.rationale_request.format(question=check_question(question)), with_image=True)


def claim_check_text(processor, claim: str, fmt: PromptFormat = PromptFormat()) -> str:
    if not isinstance(claim, str) or not claim.strip():
        raise InputError(f"the claim to check must be a non-empty string, got {claim!r:.80}")
    return render(processor, fmt.claim_check.format(claim=claim), with_image=True)
