"""What an adaptation must not change: the base model's own answers on pictures it already reads.

An adapter trained only on a user's new pictures drifts on the model's other pictures (a LoRA on the
vision tower, trained on scanned-looking pictures alone, lost 2-6 points on the plain ones:
BENCHMARKS.md, "Label-free SDRT against its ceiling"). *Keep lessons* hold it: pictures of another
source (the project's own synthetic pictures, or a dataset), each with the answer the base model
gives now, drawn as a share of every batch (:attr:`redgraph.distill.student.DistillConfig.keep_share`).
No label is read: the targets are the base model's own greedy answers, so what the adapter is asked
to keep is the model's behaviour there, right or wrong.

Example:
    >>> keep = keep_lessons(lvlm, "synthetic:train", 400)  # doctest: +SKIP
    >>> distill(lvlm, records, DistillConfig(keep="synthetic:train", keep_share=0.25))  # doctest: +SKIP
"""

from __future__ import annotations

from redgraph.errors import ConfigError, check_whole_number

ANSWER_TOKENS = 16  # longest kept answer
BATCH = 16  # pictures answered per forward


def keep_lessons(lvlm, source: str, limit: int) -> list:
    """Answer lessons of the first ``limit`` items of ``source`` (``synthetic:SPLIT``, or a dataset
    folder or file as ``redgraph eval`` reads), each with ``lvlm``'s own greedy answer from the image.

    Raises:
        ConfigError: ``source`` is a folder of unlabelled pictures (give it as the pictures to adapt
            to instead), or ``limit`` is not a positive whole number.
        InputError: as the source is refused (see :mod:`redgraph.distill.traces`).
    """
    from redgraph.distill.items import item_image
    from redgraph.distill.pictures import PICTURES
    from redgraph.distill.lesson import Lesson
    from redgraph.distill.traces import TraceConfig, trace_items
    from redgraph.models.generation import generate_with_hf
    from redgraph.models.prompts import PromptFormat, image_branch_text

    check_whole_number("keep_limit", limit)
    if not isinstance(source, str) or source.startswith(PICTURES):
        raise ConfigError(f"keep must be synthetic:SPLIT or a dataset folder or file (pictures whose answers the "
                          f"adaptation keeps), got {source!r}")
    items = trace_items(TraceConfig(source=source, limit=limit))
    question = PromptFormat().question
    lessons = []
    for start in range(0, len(items), BATCH):
        chunk = items[start:start + BATCH]
        said = generate_with_hf(lvlm, [image_branch_text(lvlm.processor, item.question) for item in chunk],
                                [item_image(item.ref) for item in chunk], ANSWER_TOKENS)
        lessons += [Lesson("answer", question.format(question=item.question), answer.strip(), item.ref, 1.0)
                    for item, answer in zip(chunk, said) if answer and answer.strip()]
    return lessons
