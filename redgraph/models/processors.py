"""Processor loading that works with and without torchvision.

Without torchvision, transformers cannot import any *video* processor, and the processors of
Qwen2-VL, Qwen2.5-VL, Qwen3-VL and SmolVLM take one in ``__init__``. For those we build a subclass
whose ``__init__`` takes only the image processor and the tokenizer; images are processed exactly
as by the stock class. Where torchvision is installed the stock processors are used unchanged.
Checkpoints are always saved under the stock class name, so they stay ordinary checkpoints.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import json

from redgraph.errors import ModelLoadError, UnsupportedError


def has_torchvision() -> bool:
    return importlib.util.find_spec("torchvision") is not None


def _takes_video_processor(processor_cls: type) -> bool:
    return "video_processor" in inspect.signature(processor_cls.__init__).parameters


# The parameters a video-taking processor may have, besides its video processor. transformers
# passes saved settings to __init__ by reading its code object's argument names, so each must be
# a real parameter of ours, not hidden in **kwargs, or it would be dropped on load.
_KNOWN_PARAMETERS = {"self", "image_processor", "tokenizer", "video_processor", "chat_template", "image_seq_len"}


@functools.cache
def image_only_processor_class(processor_cls: type) -> type:
    """A subclass of ``processor_cls`` that needs no video processor (identity if none needed).

    Raises:
        UnsupportedError: ``processor_cls`` takes a setting this wrapper does not pass on.
    """
    if not _takes_video_processor(processor_cls):
        return processor_cls
    from transformers import ProcessorMixin

    parameters = inspect.signature(processor_cls.__init__).parameters
    unknown = [name for name, p in parameters.items() if p.kind is not p.VAR_KEYWORD and name not in _KNOWN_PARAMETERS]
    if unknown:
        raise UnsupportedError(
            f"{processor_cls.__name__} takes {', '.join(unknown)}, which redgraph cannot pass on without a video "
            "processor; install torchvision to use the stock processor"
        )
    has_seq_len = "image_seq_len" in parameters

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, image_seq_len=None, **kwargs):
        if has_seq_len and image_seq_len is not None:
            kwargs["image_seq_len"] = image_seq_len
        processor_cls.__init__(self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    def apply_chat_template(self, conversation, chat_template=None, **kwargs):
        # Stock overrides (SmolVLM's) only add video defaults, read off the absent video processor.
        conversations = conversation if conversation and isinstance(conversation[0], list) else [conversation]
        for message in (m for c in conversations for m in c):
            content = message.get("content")
            if isinstance(content, list) and any(isinstance(p, dict) and p.get("type") == "video" for p in content):
                raise UnsupportedError(
                    f"{processor_cls.__name__} without torchvision handles images only, and this "
                    "conversation holds a video part; install torchvision for video input"
                )
        return ProcessorMixin.apply_chat_template(self, conversation, chat_template, **kwargs)

    # The subclass carries the stock class's name: transformers writes ``type(self).__name__`` as
    # ``processor_class`` into every config it saves (the processor's and the tokenizer's), so any
    # save_pretrained, not only LVLM.save, writes an ordinary checkpoint that loads anywhere.
    return type(
        processor_cls.__name__,
        (processor_cls,),
        {"__init__": __init__, "apply_chat_template": apply_chat_template, "__module__": __name__,
         "__qualname__": f"image_only_processor_class.<{processor_cls.__name__}>",
         "stock_class_name": processor_cls.__name__},
    )


def save_processor(processor, path: str) -> None:
    """``processor.save_pretrained(path)``: an ordinary checkpoint (the image-only subclass saves
    under its stock class's name)."""
    processor.save_pretrained(path)


def _saved_processor_class(path: str, **hub_kwargs) -> str | None:
    from transformers.utils import cached_file

    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        file = cached_file(path, name, _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False, **hub_kwargs)
        if file is None:
            continue
        with open(file, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("processor_class"):
            # Folders saved by redgraph before the subclass kept the stock name say "ImageOnly<stock>".
            return data["processor_class"].removeprefix("ImageOnly")
    return None


def load_processor(path: str, *, trust_remote_code: bool = False, **hub_kwargs):
    """Load the multimodal processor of a checkpoint (a local folder or a hub id).

    Raises:
        ModelLoadError: no multimodal processor could be built for ``path``.
    """
    import transformers
    from transformers import AutoProcessor, ProcessorMixin

    processor_cls = None
    if not has_torchvision():
        name = _saved_processor_class(path, **hub_kwargs)
        stock = getattr(transformers, name, None) if name else None
        if isinstance(stock, type) and issubclass(stock, ProcessorMixin):
            processor_cls = image_only_processor_class(stock)
    try:
        if processor_cls is not None:
            processor = processor_cls.from_pretrained(path, **hub_kwargs)
        else:
            processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code, **hub_kwargs)
    except (OSError, ValueError, TypeError, AttributeError, ImportError) as exc:
        raise ModelLoadError(f"could not load the processor of {path!r}: {exc}") from exc
    # AutoProcessor silently returns a bare tokenizer when it cannot resolve the processor class.
    if not isinstance(processor, ProcessorMixin):
        raise ModelLoadError(
            f"{path!r} has no multimodal processor (got {type(processor).__name__}); redgraph needs a "
            "vision-language checkpoint whose processor_config.json names its processor class"
        )
    return processor
