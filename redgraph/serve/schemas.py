"""Request bodies of the server, as pydantic models, and their translation into RED requests.

The chat body follows OpenAI's Chat Completions format. Fields redgraph adds (sent by the
``openai`` client through ``extra_body``): ``rationale`` or ``rationales`` (turn RED on) and
``rationale_weight`` (lambda) / ``rationale_weights`` (its split between rationales).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from redgraph.errors import MAX_ANSWER_TOKENS, MAX_RATIONALES, MAX_ROUNDS, InputError


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ImageURL(BaseModel):
    url: str
    detail: str | None = None


class ImagePart(BaseModel):
    type: Literal["image_url"]
    image_url: ImageURL


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart | ImagePart] | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


def _is_zero(value: Any) -> bool:
    return type(value) in (int, float) and value == 0


# OpenAI request fields this server does not act on, with the values that ask for nothing (clients
# send them by default: ChatOpenAI's presence_penalty=0, an empty tools list, ...). A neutral value
# is taken and changes nothing; any other value is refused, naming the field (errors.UNSUPPORTED).
NEUTRAL = {
    "presence_penalty": _is_zero,
    "frequency_penalty": _is_zero,
    "logit_bias": lambda v: v == {},
    "store": lambda v: v is False,
    "tools": lambda v: v == [],
    "functions": lambda v: v == [],
    "tool_choice": lambda v: v == "none",
    "parallel_tool_calls": lambda v: isinstance(v, bool),  # only means something with tools
    "response_format": lambda v: v == {"type": "text"},
    "modalities": lambda v: v == ["text"],
    "service_tier": lambda v: v in ("auto", "default"),
    "metadata": lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()),
    "prompt_cache_key": lambda v: isinstance(v, str),
    "safety_identifier": lambda v: isinstance(v, str),
}


class ChatRequest(BaseModel):
    """An OpenAI Chat Completions request, with redgraph's rationale fields. Fields in
    :data:`NEUTRAL` are taken when their value asks for nothing, and refused by name otherwise."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _take_neutral_values(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if not (k in NEUTRAL and (v is None or NEUTRAL[k](v)))}
        return data

    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    # redgraph's fields
    rationale: str | None = None
    rationales: list[str] | None = None
    rationale_weight: float | None = Field(default=None, ge=0)
    rationale_weights: list[float] | None = None
    page: int | None = Field(default=None, ge=1, description="of a PDF image_url (application/pdf): the page to read")


class AskRequest(BaseModel):
    """``POST /v1/redgraph/ask``: one run of the whole graph."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="the image as a data URL (or an http(s) URL when the server allows them); a PDF "
                                    "as data:application/pdf;base64,...")
    question: str
    page: int | None = Field(default=None, ge=1, description="of a PDF: the page to ask; none asks every page (up to "
                                                             "20) and answers from the one the critic supports")
    rationale: str | None = Field(default=None, description="a rationale to check and use instead of the reasoner's")
    rationale_weight: float = Field(default=1.0, ge=0)
    rationales: int = Field(default=1, ge=1, le=MAX_RATIONALES, description="K: rationales per round")
    rounds: int = Field(default=2, ge=1, le=MAX_ROUNDS)
    on_exhausted: Literal["image_only", "best_supported"] = "image_only"
    on_unsure: Literal["image_only", "rationale"] = "image_only"
    max_new_tokens: int = Field(default=16, ge=1, le=MAX_ANSWER_TOKENS)
    experts: list[Literal["lvlm", "ocr"]] = Field(
        default=["lvlm"], min_length=1, max_length=2,
        description='who checks the claims: ["lvlm"] (the model\'s own eyes) or ["lvlm", "ocr"] (with an OCR expert '
                    "for titles and fields, where the server has it installed)")


def chat_question(messages: list[Message]) -> tuple[str, str]:
    """The question text and the one image URL of a chat request.

    System and user texts are joined in order (a system prompt is part of what the model reads).
    The RED engine answers one question about one image, so a conversation with earlier assistant
    turns, tool messages, or other than exactly one image is refused rather than cut.
    """
    texts: list[str] = []
    images: list[str] = []
    for index, message in enumerate(messages):
        if message.role in ("assistant", "tool"):
            raise InputError(
                f"messages[{index}] has role {message.role!r}; redgraph answers one question about one image per "
                "request, so send the question (and any system prompt) without earlier turns"
            )
        if isinstance(message.content, str):
            texts.append(message.content)
            continue
        for part in message.content or []:
            if isinstance(part, TextPart):
                texts.append(part.text)
            else:
                if message.role != "user":
                    raise InputError(f"messages[{index}] ({message.role}) carries an image; put the image in a user message")
                images.append(part.image_url.url)
    if len(images) != 1:
        raise InputError(
            f"the request carries {len(images)} images; send exactly one image_url part (a data URL) with the question"
        )
    question = "\n".join(text.strip() for text in texts if text.strip())
    if not question:
        raise InputError("the request has no question text; add a text part to the user message")
    return question, images[0]


def stop_strings(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    stops = (stop,) if isinstance(stop, str) else tuple(stop)
    if len(stops) > 4 or any(not s for s in stops):
        raise InputError(f"stop must be up to 4 non-empty strings, got {stop!r}")
    return stops


def error_body(message: str, kind: str = "invalid_request_error", *, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """An error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
