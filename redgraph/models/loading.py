"""Loading a local vision-language model and encoding its prompts.

Example:
    >>> lvlm = load_lvlm("/path/to/Qwen2-VL-2B-Instruct", dtype="bfloat16")  # doctest: +SKIP
    >>> inputs = lvlm.encode_image_branch(image, "What colour is the car?")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from redgraph.errors import ConfigError, InputError, ModelLoadError, ModelNotFoundError, check_unicode
from redgraph.models import prompts
from redgraph.models.embedded.files import EMBEDDED_DIR, EMBEDDED_NAME, check_checkpoint_files
from redgraph.models.images import ImageInput, ready_image
from redgraph.models.processors import load_processor

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class LVLM:
    """A loaded model, its processor, and how to word its prompts.

    Attributes:
        model: a transformers image-text-to-text model in eval mode.
        processor: its multimodal processor (a ``ProcessorMixin``).
        name: the path or hub id it came from (or a descriptive name for in-memory models).
        prompt_format: the wording of question and rationale inside the user turn.
        max_image_pixels: images above this many pixels are refused.
        path: the local checkpoint folder it was loaded from, if any.
        adapter_path: the adapter folder attached to the model at load, if any.
    """

    model: torch.nn.Module
    processor: object
    name: str = "in-memory model"
    prompt_format: prompts.PromptFormat = field(default_factory=prompts.PromptFormat)
    max_image_pixels: int = 64_000_000
    path: str | None = None
    adapter_path: str | None = None  # an SDRT adapter attached at load (see redgraph.models.adapter)

    @property
    def family(self) -> str:
        return self.model.config.model_type

    @functools.cached_property
    def weights_digest(self) -> str:
        """sha256 of the weights: of the checkpoint's safetensors files when loaded from a folder
        (name order; the calibration's token bank is not weights), else of the parameters in memory.
        Computed once per LVLM."""
        from redgraph.models.calibration import NOVELTY_FILE

        files = sorted(f for f in Path(self.path).glob("*.safetensors") if f.name != NOVELTY_FILE) if self.path else []
        hasher = hashlib.sha256()
        if files:
            for file in files:
                with open(file, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        hasher.update(block)
        else:
            for name, tensor in sorted(self.model.state_dict().items()):
                hasher.update(name.encode())
                hasher.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
        return hasher.hexdigest()

    @functools.cached_property
    def calibration(self):
        """The model's fitted :class:`~redgraph.models.calibration.Calibration` (saved beside its
        weights), or None where it has none. Read once per LVLM."""
        from redgraph.models.calibration import load_calibration

        return load_calibration(self.path)

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def context_length(self) -> int | None:
        """The longest sequence the language model was configured for, if it says."""
        config = self.model.config
        text_config = getattr(config, "text_config", None) or config
        return getattr(text_config, "max_position_embeddings", None)

    def encode_image_branch(self, image: ImageInput, question: str):
        """Image + question: RED's image branch, and the direct baseline."""
        text = prompts.image_branch_text(self.processor, question, self.prompt_format)
        return self._encode(text, ready_image(image, max_pixels=self.max_image_pixels))

    def encode_rationale_branch(self, rationale: str, question: str):
        """Rationale + question, no image: RED's rationale branch."""
        text = prompts.rationale_branch_text(self.processor, rationale, question, self.prompt_format)
        return self._encode(text, None)

    def encode_cot(self, image: ImageInput, rationale: str, question: str):
        """Image + rationale + question in one sequence: plain multimodal chain-of-thought."""
        text = prompts.cot_text(self.processor, rationale, question, self.prompt_format)
        return self._encode(text, ready_image(image, max_pixels=self.max_image_pixels))

    encode_direct = encode_image_branch

    def encode_rationale_request(self, image: ImageInput, question: str):
        """Image + question, asking for the facts that answer it: how a local reasoner is prompted."""
        text = prompts.rationale_request_text(self.processor, question, self.prompt_format)
        return self._encode(text, ready_image(image, max_pixels=self.max_image_pixels))

    def encode_claim_check(self, image: ImageInput, claim: str):
        """Image + one statement, asking yes or no: how a local critic is prompted."""
        text = prompts.claim_check_text(self.processor, claim, self.prompt_format)
        return self._encode(text, ready_image(image, max_pixels=self.max_image_pixels))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save model and processor as an ordinary checkpoint that :func:`load_lvlm` reads back.

        Raises:
            ConfigError: a LoRA student is attached (its layers are in the model): saving would
                write a checkpoint no plain model loads. Detach it first; it saves to its own folder.
        """
        from redgraph.models.processors import save_processor

        if hasattr(self.model, "peft_config"):
            raise ConfigError("this model has a LoRA adapter attached; detach it before saving the base model "
                              "(the adapter saves to its own folder)")
        self.model.save_pretrained(path)
        save_processor(self.processor, os.fspath(path))

    @property
    def max_text_tokens(self) -> int:
        """The longest question or rationale accepted, in tokens: half the model's context (the rest
        is for the image, the prompt's own words and the answer), or 32,768 when it does not say."""
        return self.context_length // 2 if self.context_length else 32_768

    @functools.cached_property
    def special_tokens(self) -> tuple[str, ...]:
        """The tokenizer's special tokens as text (``<|im_end|>``, ``<|image_pad|>``, ...): markup the
        model reads as structure, so never accepted inside a user's text."""
        tokenizer = self.tokenizer
        found = {token.content for token in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values()
                 if getattr(token, "special", False)}
        found.update(getattr(tokenizer, "all_special_tokens", None) or ())
        return tuple(sorted(t for t in found if t))

    def check_text_length(self, text: str, what: str) -> None:
        """Refuse, before any model work, a question or rationale longer than :attr:`max_text_tokens`
        or holding one of the model's :attr:`special_tokens` (refused by name, never escaped: the
        prompt's structure is not the user's to write).

        Raises:
            InputError: naming ``what`` and its length and the limit, or the special token, or a
                lone surrogate (the tokenizer cannot read one).
        """
        check_unicode(text, what)
        for token in self.special_tokens:
            if token in text:
                raise InputError(f"the {what} contains the model's special token {token!r}, which the model reads "
                                 "as prompt structure, not text; remove it")
        limit = self.max_text_tokens
        # A token is rarely longer than 16 characters: far longer text is refused without tokenising it.
        if len(text) > 16 * limit:
            raise InputError(f"the {what} is {len(text)} characters, far above this model's limit of {limit} tokens "
                             "for a question or rationale; shorten it")
        count = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if count > limit:
            raise InputError(f"the {what} is {count} tokens, above this model's limit of {limit} tokens for a question "
                             "or rationale (half its context); shorten it")

    def check_fits(self, inputs, max_new_tokens: int, what: str) -> None:
        """Raise InputError when prompt + answer would not fit the model's context."""
        limit = self.context_length
        length = int(inputs["input_ids"].shape[-1])
        if limit is not None and length + max_new_tokens > limit:
            raise InputError(
                f"the {what} is {length} tokens and {max_new_tokens} new tokens are asked for, which exceeds "
                f"the model's context of {limit} tokens; shorten the text or lower max_new_tokens"
            )

    def _encode(self, text: str, image):
        kwargs = {"images": [image]} if image is not None else {}
        encoded = self.processor(text=[text], return_tensors="pt", **kwargs)
        return encoded.to(self.device)


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device this machine can run a model on; else ConfigError saying what to use."""
    try:
        torch_device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device {device!r} is not understood; use e.g. 'cpu', 'cuda' or 'cuda:0'") from exc
    if torch_device.type == "meta":
        raise ConfigError(f"device {device!r} holds no weights and cannot answer; use 'cpu' or a GPU such as 'cuda'")
    if torch_device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} is not available: this torch sees no CUDA GPU; use 'cpu'")
        if torch_device.index is not None and torch_device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r} is not available: this machine has {torch.cuda.device_count()} "
                              "CUDA GPU(s); use a lower index")
    elif torch_device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"device {device!r} is not available on this machine; use 'cpu'")
    elif torch_device.type != "cpu":
        backend = getattr(torch, torch_device.type, None)  # xpu, npu, ...: where torch can tell, ask it
        if backend is not None and hasattr(backend, "is_available") and not backend.is_available():
            raise ConfigError(f"device {device!r} is not available on this machine; use 'cpu'")
    return torch_device


def load_lvlm(
    model: str | os.PathLike[str] | None = None,
    *,
    dtype: str | torch.dtype = "auto",
    device: str | torch.device = "cpu",
    trust_remote_code: bool = False,
    local_files_only: bool | None = None,
    adapter: str | os.PathLike[str] | None = None,
) -> LVLM:
    """Load any transformers image-text-to-text checkpoint.

    Args:
        model: a local folder, or a hub id already in the user's cache (or reachable); None loads
            the embedded default model shipped with redgraph (offline, float32 unless ``dtype``
            says otherwise).
        dtype: ``"auto"`` (the checkpoint's own), ``"float32"``, ``"float16"``, ``"bfloat16"`` or a
            ``torch.dtype``.
        device: where to put the weights, e.g. ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        trust_remote_code: allow running model code shipped with the checkpoint. Off by default.
        local_files_only: never touch the network; defaults to True for local folders.
        adapter: an SDRT adapter folder (``redgraph distill``) to attach; it must have been
            trained on these base weights.

    Raises:
        ModelLoadError: the checkpoint is unreadable, needs remote code, or is not a
            vision-language model; :class:`ModelNotFoundError` (also an InputError) when the
            folder does not exist.
        ConfigError: ``dtype`` or ``device`` is not understood.
    """
    if model is None:
        lvlm = load_embedded(device=device, dtype="float32" if dtype == "auto" else dtype)
        return _with_adapter(lvlm, adapter)
    from transformers import AutoModelForImageTextToText

    path = os.fspath(model)
    if not isinstance(path, str) or not path.strip():
        raise ModelNotFoundError(f"model must be a folder or a hub id, got {model!r}")
    is_local = os.path.isdir(path)
    if not is_local and (path.startswith((".", "/", "~")) or os.sep in path.strip("/").replace("/", "", 1)):
        raise ModelNotFoundError(f"model folder {path!r} does not exist; pass an existing checkpoint folder or a hub id")
    torch_dtype = _parse_dtype(dtype)
    torch_device = check_device(device)
    hub_kwargs = {"local_files_only": is_local if local_files_only is None else local_files_only}
    try:
        loaded = AutoModelForImageTextToText.from_pretrained(
            path, dtype=torch_dtype, trust_remote_code=trust_remote_code, **hub_kwargs
        )
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise ModelLoadError(
                f"{path!r} ships its own model code; review it, then pass trust_remote_code=True "
                "(--trust-remote-code on the command line) to run it"
            ) from exc
        raise ModelLoadError(f"{path!r} is not a supported vision-language checkpoint: {exc}") from exc
    except (OSError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"could not load model {path!r}: {exc}") from exc
    processor = load_processor(path, trust_remote_code=trust_remote_code, **hub_kwargs)
    loaded.to(torch_device).eval()
    return _with_adapter(LVLM(model=loaded, processor=processor, name=path, path=path if is_local else None), adapter)


def _with_adapter(lvlm: LVLM, adapter: str | os.PathLike[str] | None) -> LVLM:
    if adapter is None:
        return lvlm
    from redgraph.models.adapter import load_adapter

    load_adapter(lvlm, adapter)
    lvlm.adapter_path = os.fspath(adapter)
    return lvlm


def load_embedded(path: str | os.PathLike[str] | None = None, *, device: str = "cpu", dtype: str = "float32"):
    """Load the embedded model (or a checkpoint trained with ``redgraph embedded train``).

    Args:
        path: a checkpoint folder; None loads the one shipped in the package.
        device: where to put the weights.
        dtype: ``"float32"`` (as trained), ``"float16"`` or ``"bfloat16"``.

    Raises:
        ModelLoadError: a file is missing or corrupt; the message names it.
    """
    folder = Path(path) if path is not None else EMBEDDED_DIR
    check_checkpoint_files(folder)
    try:
        lvlm = load_lvlm(folder, dtype=dtype, device=device, local_files_only=True)
    except ModelLoadError as exc:
        raise ModelLoadError(f"the embedded model in {folder} could not be loaded: {exc}") from exc
    if path is None:
        lvlm.name = EMBEDDED_NAME
    return lvlm


def _parse_dtype(dtype: str | torch.dtype):
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    if dtype in _DTYPES:
        return _DTYPES[dtype]
    raise ConfigError(f"dtype {dtype!r} is not supported; use 'auto', 'float32', 'float16' or 'bfloat16'")


class LazyModel:
    """A model loaded on first use (once, whichever thread asks first), or one given ready."""

    def __init__(self, model: str | os.PathLike[str] | None = None, *, lvlm=None) -> None:
        self.model = model
        self._lvlm = lvlm
        self._lock = threading.Lock()

    def get(self):
        with self._lock:
            if self._lvlm is None:
                self._lvlm = load_lvlm(self.model)
            return self._lvlm
