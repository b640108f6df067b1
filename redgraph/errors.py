"""Every error redgraph raises on purpose derives from :class:`RedgraphError`, and the input checks
(``check_*``) shared by every layer live here beside them.

Messages quote the offending value and say what to do about it.
"""

from __future__ import annotations

import math


class RedgraphError(Exception):
    """Base class of all redgraph errors."""


class ConfigError(RedgraphError, ValueError):
    """A setting is out of range or of the wrong type."""


class InputError(RedgraphError, ValueError):
    """A user-supplied input (image, question, rationale) cannot be used."""


class ImageError(InputError):
    """An image is missing, unreadable, or too large."""


class ModelLoadError(RedgraphError):
    """A model or its processor could not be loaded."""


class ModelNotFoundError(ModelLoadError, InputError):
    """The model named by the user is not there (no such folder): a bad input, not a failed load."""


class RemoteModelError(RedgraphError):
    """A remote model (an OpenAI-compatible server, a LangChain chat model) failed or timed out."""


class ExpertError(RedgraphError):
    """An expert beside the model (the critic's OCR engine) failed or ran out of time."""


class UnsupportedError(RedgraphError, NotImplementedError):
    """A requested mode or model family is not supported."""


class Cancelled(RedgraphError):
    """Work stopped before it finished because its caller went away or its deadline passed."""


def check_whole_number(name: str, value: object, minimum: int = 1, error: type[RedgraphError] | None = None,
                       maximum: int | None = None) -> int:
    """``value`` if it is an int (not a bool) of at least ``minimum`` (and at most ``maximum``); else
    ``error`` (default :class:`ConfigError`) naming ``name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise (error or ConfigError)(f"{name} must be a whole number >= {minimum}, got {value!r:.80}")
    if maximum is not None and value > maximum:
        raise (error or ConfigError)(f"{name} must be a whole number from {minimum} to {maximum}, got {value!r:.80}")
    return value


def _visible(text: str) -> bool:
    """Whether ``text`` holds a character a reader could see (not only spaces or control characters)."""
    return any(ch.isprintable() and not ch.isspace() for ch in text)


def check_unicode(text: str, what: str) -> None:
    """Raise InputError unless ``text`` can be written as UTF-8 (no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate, e.g. from a JSON "\\ud800" escape
        raise InputError(f"the {what} is not valid Unicode (a lone surrogate at character {exc.start}); send UTF-8 "
                         "text") from None


def check_question(question: object) -> str:
    if not isinstance(question, str):
        raise InputError(f"the question must be a string, got {type(question).__name__}: {question!r:.80}")
    if not question.strip():
        raise InputError(f"the question is empty ({question!r}); ask something about the image")
    check_unicode(question, "question")
    if not _visible(question):
        raise InputError(f"the question holds only control characters ({question!r:.80}); ask something about the image")
    return question


def check_rationale(rationale: object, index: int | None = None) -> str:
    which = "rationale" if index is None else f"rationale {index}"
    if not isinstance(rationale, str):
        raise InputError(f"{which} must be a string, got {type(rationale).__name__}: {rationale!r:.80}")
    if not rationale.strip():
        raise InputError(f"{which} is empty ({rationale!r}); pass the reasoning text, or decode without a rationale")
    check_unicode(rationale, which)
    if not _visible(rationale):
        raise InputError(f"{which} holds only control characters ({rationale!r:.80}); pass the reasoning text, or "
                         "decode without a rationale")
    return rationale


# RED's lambda: beyond this the image branch no longer counts (a rationale weighted 100 outvotes it by
# e^100 per nat), so a larger value is a mistake, not a setting.
MAX_RATIONALE_WEIGHT = 100.0
# The most one graph run may ask for, on every surface (RunContext checks them; the server's and the
# tools' schemas use the same numbers).
MAX_RATIONALES = 8
MAX_ROUNDS = 5
MAX_ANSWER_TOKENS = 512


def check_rationale_weight(value: object, name: str = "rationale_weight") -> float:
    """RED's lambda: a finite number from 0 to :data:`MAX_RATIONALE_WEIGHT`."""
    check_non_negative(name, value)
    if value > MAX_RATIONALE_WEIGHT:
        raise ConfigError(f"{name} (lambda) must be at most {MAX_RATIONALE_WEIGHT:g}, got {value!r}; 1 weighs the "
                          "rationale as much as the image, 0 ignores it")
    return float(value)


def check_rationale_weights(weights) -> tuple[float, ...]:
    """Validate per-rationale relative weights (non-negative, finite, not all zero)."""
    weights = tuple(weights)
    if not weights:
        raise ConfigError("rationale_weights is empty; give one weight per rationale, or None for equal shares")
    for index, weight in enumerate(weights):
        check_non_negative(f"rationale_weights[{index}]", weight)
    if not math.isfinite(sum(weights)):
        raise ConfigError(f"rationale_weights {weights!r:.120} add up beyond a float; they are relative, so scale "
                          "them down (e.g. to sum to 1)")
    if sum(weights) == 0:
        raise ConfigError(
            f"rationale_weights {weights!r} are all zero; set rationale_weight=0 to decode without rationales"
        )
    return weights


def check_non_negative(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {type(value).__name__}: {value!r}")
    if math.isnan(value) or math.isinf(value):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    if value < 0:
        raise ConfigError(f"{name} must be >= 0, got {value!r}; 0 ignores the rationale, larger values follow it more")


__all__ = [
    "Cancelled",
    "ConfigError",
    "ImageError",
    "InputError",
    "ModelLoadError",
    "ModelNotFoundError",
    "RedgraphError",
    "RemoteModelError",
    "UnsupportedError",
    "check_non_negative",
    "check_question",
    "check_rationale",
    "check_rationale_weight",
    "check_rationale_weights",
    "check_whole_number",
]
