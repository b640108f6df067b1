"""Reasoners backed by remote models: any OpenAI-compatible server through the official ``openai``
client, or any LangChain chat model. The image travels as a base64 PNG data URL.

Example:
    >>> reasoner = OpenAIReasoner("gpt-4o", styles=("step_by_step", "decompose"))  # doctest: +SKIP
    >>> reasoner = LangChainReasoner(ChatOpenAI(model="gpt-4o"))  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from redgraph.agents.reasoner import RESAMPLE_TEMPERATURE, StyledReasoner
from redgraph.errors import ConfigError, RemoteModelError, check_whole_number
from redgraph.models.images import image_data_url

OPENAI_KEY_ENV = "OPENAI_API_KEY"


class OpenAIReasoner(StyledReasoner):
    """Writes rationales with a model behind the OpenAI Chat Completions API.

    Args:
        model: the model name the server knows, e.g. ``"gpt-4o"``.
        base_url: any OpenAI-compatible server; None for OpenAI's own.
        api_key: None reads ``$OPENAI_API_KEY``.
        styles: prompt-library style names, used in turn.
        timeout: seconds per request.
        max_retries: retries (with exponential backoff, by the client) on connection errors, 408,
            409, 429 and 5xx.
        max_new_tokens: longest analysis or rationale.
        client: a ready ``openai.OpenAI`` client (the other connection arguments are then unused).

    Raises:
        ConfigError: ``openai`` is not installed, or no API key is given or set.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        styles: Sequence[str] = ("step_by_step",),
        timeout: float = 60.0,
        max_retries: int = 3,
        max_new_tokens: int = 300,
        client=None,
    ) -> None:
        super().__init__(styles, max_new_tokens)
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"the OpenAI model name must be a non-empty string, got {model!r}")
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ConfigError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        check_whole_number("max_retries", max_retries, minimum=0)
        self.model = model
        self.model_name = f"openai:{model}"
        if client is None:
            try:
                import openai
            except ImportError as exc:
                raise ConfigError("the OpenAI reasoner needs the openai package: pip install 'redgraph[openai]'") from exc
            key = api_key if api_key is not None else os.environ.get(OPENAI_KEY_ENV)
            if not key:
                raise ConfigError(f"no API key for {base_url or 'OpenAI'}: set {OPENAI_KEY_ENV} or pass api_key")
            client = openai.OpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=max_retries)
        self.client = client

    def complete(self, instruction: str, picture, resample: int | None = None) -> str:
        import openai

        options = {"temperature": RESAMPLE_TEMPERATURE, "seed": resample} if resample is not None else {"temperature": 0}
        messages = [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": image_data_url(picture)}},
            {"type": "text", "text": instruction},
        ]}]
        where = f"{self.model!r} at {self.client.base_url}"
        try:
            response = self.client.chat.completions.create(
                model=self.model, messages=messages, max_tokens=self.max_new_tokens, **options
            )
        except openai.APITimeoutError as exc:
            raise RemoteModelError(f"{where} timed out after retries; raise timeout= or try later") from exc
        except openai.APIConnectionError as exc:
            raise RemoteModelError(f"cannot reach {where}: {exc}; check base_url and the network") from exc
        except openai.AuthenticationError as exc:
            raise RemoteModelError(f"{where} refused the API key (401); check {OPENAI_KEY_ENV}") from exc
        except openai.APIStatusError as exc:
            raise RemoteModelError(f"{where} answered HTTP {exc.status_code}: {_message(exc)}") from exc
        except openai.APIError as exc:
            raise RemoteModelError(f"{where} failed: {exc}") from exc
        choices = getattr(response, "choices", None) or []
        content = choices[0].message.content if choices else None
        if not isinstance(content, str) or not content.strip():
            raise RemoteModelError(f"{where} returned no text (finish reason "
                                   f"{choices[0].finish_reason if choices else 'none'}); try again or raise max_new_tokens")
        return content.strip()


def _message(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(exc)


class LangChainReasoner(StyledReasoner):
    """Writes rationales with any LangChain chat model (the image as a standard image content block)."""

    def __init__(self, chat_model, *, styles: Sequence[str] = ("step_by_step",), max_new_tokens: int = 300) -> None:
        super().__init__(styles, max_new_tokens)
        if not hasattr(chat_model, "invoke"):
            raise ConfigError(f"chat_model must be a LangChain chat model, got {type(chat_model).__name__}")
        self.chat_model = chat_model
        self.model_name = f"langchain:{getattr(chat_model, 'model_name', None) or type(chat_model).__name__}"

    def complete(self, instruction: str, picture, resample: int | None = None) -> str:
        from langchain_core.messages import HumanMessage

        data = image_data_url(picture).split(",", 1)[1]
        message = HumanMessage(content=[
            {"type": "image", "base64": data, "mime_type": "image/png"},
            {"type": "text", "text": instruction},
        ])
        try:
            reply = self.chat_model.invoke([message])
        except Exception as exc:  # providers raise their own types; say which model failed and why
            raise RemoteModelError(f"the chat model {self.model_name} failed: {type(exc).__name__}: {exc}") from exc
        text = reply.text if isinstance(getattr(reply, "text", None), str) else str(getattr(reply, "content", ""))
        if not text.strip():
            raise RemoteModelError(f"the chat model {self.model_name} returned no text")
        return text.strip()
