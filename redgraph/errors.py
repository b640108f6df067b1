"""Every error redgraph raises on purpose derives from :class:`RedgraphError`, and the input checks
(``check_*``) shared by every layer live here beside them.

Messages quote the offending value and say what to do about it.
"""

from __future__ import annotations


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


class RemoteModelError(RedgraphError):
    """A remote model (an OpenAI-compatible server, a LangChain chat model) failed or timed out."""


class UnsupportedError(RedgraphError, NotImplementedError):
    """A requested mode or model family is not supported."""


def check_whole_number(name: str, value: object, minimum: int = 1, error: type[RedgraphError] | None = None) -> int:
    """``value`` if it is an int (not a bool) of at least ``minimum``; else ``error`` (default
    :class:`ConfigError`) naming ``name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise (error or ConfigError)(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


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


__all__ = [
    "ConfigError",
    "ImageError",
    "InputError",
    "ModelLoadError",
    "RedgraphError",
    "RemoteModelError",
    "UnsupportedError",
    "check_question",
    "check_rationale",
    "check_whole_number",
]
