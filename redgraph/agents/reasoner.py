"""The reasoner: writes K rationales about the image and question, in styles from the prompt library.

:class:`LocalReasoner` runs a local LVLM. Rationale k uses style ``styles[k % len(styles)]``; the
first use of a style decodes greedily, later uses of the same style sample (temperature 0.7,
seeded by k) so that K rationales are not K copies. Two-step styles first write an analysis, then
the rationale from it. A critique from an earlier round is passed into the prompt.

Example:
    >>> reasoner = LocalReasoner(lvlm, styles=("facts",))  # doctest: +SKIP
    >>> [r.text for r in reasoner.write("chart.png", "Which bar is the tallest?", k=2)]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from redgraph.agents.prompt_library import PromptStyle, get_style
from redgraph.errors import ConfigError, check_question, check_whole_number
from redgraph.models.images import ImageInput, ready_image
from redgraph.models.prompts import render

RESAMPLE_TEMPERATURE = 0.7


@dataclass(frozen=True)
class Rationale:
    """One rationale and how it was written."""

    text: str
    style: str
    model: str
    analysis: str | None = None  # the first step of a two-step style
    sampled: bool = False
    # A reading rationale's: each claim's evidence (its reader, the text or bar read, its box) and
    # what the readers read for the question itself (None: a model's rationale, which says no such thing).
    evidence: tuple[dict, ...] = ()
    reading: str | None = None
    notes: tuple[str, ...] = ()  # what the writer could not do (a reader that failed or could not read)


class Reasoner(Protocol):
    """What the graph needs of a reasoner: K rationales for an image and question, revising when
    given the critic's critique."""

    def write(self, image: ImageInput, question: str, k: int = 1, *,
              critique: str | None = None) -> list[Rationale]: ...


class StyledReasoner:
    """The reasoning flow shared by every reasoner: styles in turn, two-step styles, critique passed in.

    Subclasses say how to get one completion for an instruction about an image (``complete``); a
    chat critic (:class:`redgraph.agents.critic.ChatCritic`) uses the same method.
    """

    model_name = "reasoner"

    def __init__(self, styles: Sequence[str], max_new_tokens: int) -> None:
        if isinstance(styles, str) or not styles:
            raise ConfigError(f"styles must be a non-empty list of style names, got {styles!r}")
        self.styles: tuple[PromptStyle, ...] = tuple(get_style(name) for name in styles)
        check_whole_number("max_new_tokens", max_new_tokens)
        self.max_new_tokens = max_new_tokens

    def write(self, image: ImageInput, question: str, k: int = 1, *, critique: str | None = None) -> list[Rationale]:
        """K rationales; with ``critique``, revisions that answer it."""
        check_question(question)
        check_whole_number("k (rationales per question)", k)
        picture = self._load(image)
        rationales = []
        for index in range(k):
            style = self.styles[index % len(self.styles)]
            resample = index if index >= len(self.styles) else None
            analysis = None
            if style.two_step:
                analysis = self.complete(style.analysis_prompt(question), picture, resample)
            # A two-step style needs an analysis; a model that wrote none gets an explicit "(none)".
            prompt = style.rationale_prompt(question, analysis=(analysis or "(none)") if style.two_step else None,
                                            critique=critique)
            text = self.complete(prompt, picture, resample)
            rationales.append(Rationale(text, style.name, self.model_name, analysis, resample is not None))
        return rationales

    def _load(self, image: ImageInput):
        return ready_image(image)

    def complete(self, instruction: str, picture, resample: int | None = None) -> str:
        raise NotImplementedError


class LocalReasoner(StyledReasoner):
    """Writes rationales with a local LVLM.

    Args:
        lvlm: the model to write with.
        styles: prompt-library style names, used in turn.
        max_new_tokens: longest analysis or rationale.
    """

    def __init__(self, lvlm, *, styles: Sequence[str] = ("facts",), max_new_tokens: int = 96) -> None:
        super().__init__(styles, max_new_tokens)
        self.lvlm = lvlm
        self.model_name = lvlm.name

    def _load(self, image: ImageInput):
        return ready_image(image, max_pixels=self.lvlm.max_image_pixels)

    def complete(self, instruction: str, picture, resample: int | None = None) -> str:
        from redgraph.decoding.generate import generate_text

        options = {"temperature": RESAMPLE_TEMPERATURE, "seed": resample} if resample is not None else {}
        [text] = generate_text(self.lvlm, [render(self.lvlm.processor, instruction, with_image=True)], [picture],
                               self.max_new_tokens, **options)
        return text
