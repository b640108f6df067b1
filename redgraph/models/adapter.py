"""The student's trainable parts for SDRT self-distillation; the base model stays frozen.

- A **representation intervention** at chosen language layers, LoReFT-style: the layer's output
  hidden state ``h`` becomes ``h + Rᵀ(W h + b − R h)``, with ``R`` (rank × width) kept
  orthonormal and ``W``, ``b`` learned. ``W`` starts equal to ``R`` and ``b`` at 0, so an untrained
  edit is exactly zero.
- A **vision-language skip connection**: each image's pooled vision features, projected to the
  language width, are added to that image's token positions before a later language layer,
  through a gate ``tanh(g)`` with ``g`` starting at 0 (exactly no change). Added at the image's
  positions only, it reaches the answer through attention and the KV cache, so decoding steps and
  text-only rows (RED's rationale branch) need nothing.

Both act through forward hooks on the loaded model, so ``model.generate``, RED, the critic and the
graph run on the adapted model unchanged. Per-forward state is thread-local: two threads decoding
with one adapted model do not see each other's images.

The alternative student (``kind="lora"``) is LoRA through ``peft``: low-rank updates of the
query and value projections of chosen language layers, injected into the model in place (no
wrapper class, so RED and the graph see the same model), with B starting at zero (exactly no
change); :class:`LoraAdapter` has the same interface.

Saved as a small folder (``adapter_config.json`` + ``adapter.safetensors``) that carries a
fingerprint of the base weights it was trained on; :func:`load_adapter` refuses it on others.

Example:
    >>> adapter = Adapter.for_model(lvlm.model, AdapterConfig(layers=(2,), rank=4, skip_layer=3))  # doctest: +SKIP
    >>> adapter.attach(lvlm.model)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from redgraph.errors import ConfigError, InputError, UnsupportedError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter.safetensors"
FORMAT = "redgraph-sdrt-adapter"
KINDS = ("sdrt", "lora")


@dataclass(frozen=True)
class AdapterConfig:
    """Where and how big the student's edits are.

    Attributes:
        layers: language layers (0-based) whose output hidden states the intervention edits (with
            ``kind="lora"``: whose attention projections LoRA adapts); empty for none.
        rank: the intervention's (or LoRA's) rank.
        skip_layer: the language layer before which the vision skip is added; None for no skip
            (and always None with LoRA).
        kind: ``"sdrt"`` (intervention and skip) or ``"lora"`` (through ``peft``).
    """

    layers: tuple[int, ...] = (1,)
    rank: int = 4
    skip_layer: int | None = 2
    kind: str = "sdrt"

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"rank must be a whole number >= 1, got {self.rank!r}")
        if self.kind not in KINDS:
            raise ConfigError(f"adapter kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "lora":
            if self.skip_layer is not None:
                raise ConfigError(f"a LoRA adapter has no vision skip; pass skip_layer=None (got {self.skip_layer!r})")
            if not self.layers:
                raise ConfigError("a LoRA adapter needs at least one language layer to adapt")
        if not self.layers and self.skip_layer is None:
            raise ConfigError("an adapter with no intervention layer and no skip connection changes nothing; "
                              "give layers, skip_layer or both")

    def check(self, model) -> None:
        count = len(language_layers(model))
        for layer in (*self.layers, *(() if self.skip_layer is None else (self.skip_layer,))):
            if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < count:
                raise ConfigError(f"layer {layer!r} is not a language layer of this model (it has {count}: 0-{count - 1})")


class LowRankIntervention(nn.Module):
    """``h + Rᵀ(W h + b − R h)`` with orthonormal rows of ``R``: a rank-``r`` edit of the hidden state."""

    def __init__(self, width: int, rank: int) -> None:
        super().__init__()
        if rank > width:
            raise ConfigError(f"rank {rank} exceeds the hidden width {width}")
        # Without the trivialisation torch keeps no (width x width) base buffer: the folder stays small.
        self.rotate = nn.utils.parametrizations.orthogonal(nn.Linear(width, rank, bias=False), use_trivialization=False)
        self.learned = nn.Linear(width, rank)
        with torch.no_grad():
            self.learned.weight.copy_(self.rotate.weight)
            self.learned.bias.zero_()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        rotate = self.rotate.weight
        # (W − R) h + b rather than W h + b − R h: exactly zero while W == R and b == 0.
        low = nn.functional.linear(hidden.to(rotate.dtype), self.learned.weight - rotate, self.learned.bias)
        return hidden + (low @ rotate).to(hidden.dtype)


class VisionSkip(nn.Module):
    """``tanh(g) · P(pooled image features)``, with ``g`` starting at 0."""

    def __init__(self, vision_width: int, width: int) -> None:
        super().__init__()
        self.project = nn.Linear(vision_width, width)
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.gate) * self.project(pooled)


def language_layers(model) -> nn.ModuleList:
    inner = getattr(model, "model", None)
    language = getattr(inner, "language_model", None)
    layers = getattr(language, "layers", None)
    if layers is None:
        raise UnsupportedError(f"{type(model).__name__} has no language_model.layers to attach an adapter to")
    return layers


def _vision_width(model) -> int:
    """Width of the vision tower's output tokens (what the language model receives at image positions)."""
    return int(model.config.get_text_config().hidden_size)


class _Forward(threading.local):
    """What the hooks of one forward share, per thread."""

    def __init__(self) -> None:
        self.image_mask: torch.Tensor | None = None  # (B, T) True at the current forward's image tokens
        self.tokens_per_image: list[int] = []
        self.features: torch.Tensor | None = None  # (image tokens, width), in the order the model places them


class Adapter(nn.Module):
    """The intervention modules and the vision skip of one model; :meth:`attach` hooks them in."""

    def __init__(self, config: AdapterConfig, width: int, vision_width: int) -> None:
        super().__init__()
        self.config = config
        self.interventions = nn.ModuleDict({str(layer): LowRankIntervention(width, config.rank)
                                            for layer in config.layers})
        self.skip = VisionSkip(vision_width, width) if config.skip_layer is not None else None
        self._handles: list = []
        self._forward = _Forward()

    @classmethod
    def for_model(cls, model, config: AdapterConfig, *, seed: int = 0) -> Adapter:
        config.check(model)
        if config.skip_layer is not None and not hasattr(model.config, "image_token_id"):
            raise UnsupportedError(f"the vision skip needs image_token_id in the config; {type(model).__name__} has "
                                   "none (use skip_layer=None)")
        width = int(model.config.get_text_config().hidden_size)
        with torch.random.fork_rng(devices=[]):  # seeded here; the caller's generator is left as it was
            torch.manual_seed(seed)
            adapter = cls(config, width, _vision_width(model))
        parameter = next(model.parameters())
        return adapter.to(device=parameter.device)

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self, model) -> Adapter:
        """Hook the adapter into ``model`` (its weights are not changed); :meth:`detach` undoes it."""
        if self.attached:
            raise ConfigError("this adapter is attached already; detach it first")
        self.config.check(model)
        layers = language_layers(model)
        for name, module in self.interventions.items():
            self._handles.append(layers[int(name)].register_forward_hook(self._edit(module)))
        if self.skip is not None:
            image_token = model.config.image_token_id
            merge = int(model.config.vision_config.spatial_merge_size) ** 2  # patches per image token
            self._handles.append(model.register_forward_pre_hook(self._note_inputs(image_token, merge),
                                                                 with_kwargs=True))
            self._handles.append(model.register_forward_hook(self._forget))
            self._handles.append(model.model.visual.register_forward_hook(self._note_features))
            self._handles.append(layers[self.config.skip_layer].register_forward_pre_hook(self._add_skip,
                                                                                          with_kwargs=True))
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # -- hooks ---------------------------------------------------------------------------------

    @staticmethod
    def _edit(module: LowRankIntervention):
        def hook(_layer, _args, output):
            if isinstance(output, tuple):
                return (module(output[0]), *output[1:])
            return module(output)

        return hook

    def _note_inputs(self, image_token: int, merge: int):
        def hook(_model, args, kwargs):
            input_ids = kwargs.get("input_ids", args[0] if args else None)
            grid = kwargs.get("image_grid_thw")
            state = self._forward
            state.features = None
            state.image_mask = None if input_ids is None else input_ids == image_token
            state.tokens_per_image = [] if grid is None else (grid.prod(-1) // merge).tolist()

        return hook

    def _forget(self, _model, _args, _output) -> None:
        self._forward.features = None
        self._forward.image_mask = None

    def _note_features(self, _visual, _args, output) -> None:
        pooled = getattr(output, "pooler_output", None)
        self._forward.features = pooled if pooled is not None else output

    def _add_skip(self, _layer, args, kwargs):
        state = self._forward
        if state.features is None or state.image_mask is None or not state.image_mask.any():
            return None
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        features = state.features.to(hidden.dtype)
        pooled = torch.stack([part.mean(0) for part in torch.split(features, state.tokens_per_image)])  # (images, w)
        per_token = torch.repeat_interleave(self.skip(pooled.to(self.skip.project.weight.dtype)).to(hidden.dtype),
                                            torch.tensor(state.tokens_per_image, device=hidden.device), dim=0)
        mask = state.image_mask.to(hidden.device)
        if int(mask.sum()) != per_token.shape[0]:
            return None  # a forward whose image tokens are not all in this call (cannot happen with our prompts)
        edited = hidden.clone()
        edited[mask] = edited[mask] + per_token
        if "hidden_states" in kwargs:
            return args, {**kwargs, "hidden_states": edited}
        return (edited, *args[1:]), kwargs

    # -- files ---------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str], *, base_digest: str, extra: dict | None = None) -> Path:
        """Write the adapter folder; ``base_digest`` (:func:`base_fingerprint`) names the weights it
        was trained on."""
        return _save_folder(path, self.state_dict(), self.config, base_digest, extra)


LORA_NAME = "redgraph"


def _peft():
    try:
        import peft
    except ImportError:
        raise ConfigError("a LoRA adapter needs peft: pip install 'redgraph[distill]' (or pip install peft)") from None
    return peft


class LoraAdapter:
    """LoRA through ``peft`` on the query and value projections of ``config.layers``, injected into
    the model in place; the same interface as :class:`Adapter`. While detached, its weights are kept
    here and put back at the next :meth:`attach`."""

    def __init__(self, config: AdapterConfig, seed: int = 0) -> None:
        self.config, self.seed = config, seed
        self._model = None
        self._state: dict[str, torch.Tensor] | None = None

    @classmethod
    def for_model(cls, model, config: AdapterConfig, *, seed: int = 0) -> LoraAdapter:
        config.check(model)
        _peft()
        return cls(config, seed)

    @property
    def attached(self) -> bool:
        return self._model is not None

    def attach(self, model) -> LoraAdapter:
        if self.attached:
            raise ConfigError("this adapter is attached already; detach it first")
        if hasattr(model, "peft_config"):
            raise ConfigError("this model already carries peft adapters; load the student on a model without them")
        peft = _peft()
        self.config.check(model)
        layers = "|".join(str(layer) for layer in self.config.layers)
        lora = peft.LoraConfig(r=self.config.rank, lora_alpha=2 * self.config.rank, lora_dropout=0.0,
                               target_modules=rf".*language_model\.layers\.({layers})\.self_attn\.(q_proj|v_proj)")
        with torch.random.fork_rng(devices=[]):  # A's initial values; B starts at zero
            torch.manual_seed(self.seed)
            peft.inject_adapter_in_model(lora, model, adapter_name=LORA_NAME)
        self._model = model
        if self._state is not None:
            self.load_state_dict(self._state)
        return self

    def detach(self) -> None:
        if not self.attached:
            return
        from peft.tuners.lora import LoraLayer

        self._state = self.state_dict()
        for name, module in list(self._model.named_modules()):
            if isinstance(module, LoraLayer):
                parent, _, child = name.rpartition(".")
                setattr(self._model.get_submodule(parent), child, module.get_base_layer())
        vars(self._model).pop("peft_config", None)  # what the injection added besides the layers
        self._model = None

    def parameters(self):
        if not self.attached:
            raise ConfigError("a LoRA adapter's parameters exist only while attached; attach it first")
        return [p for name, p in self._model.named_parameters() if ".lora_" in name]

    def state_dict(self) -> dict[str, torch.Tensor]:
        if not self.attached:
            return dict(self._state or {})
        state = _peft().get_peft_model_state_dict(self._model, adapter_name=LORA_NAME)
        return {name: tensor.detach().to("cpu").clone() for name, tensor in state.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], strict: bool = True) -> None:
        if self.attached:
            peft = _peft()
            expected = set(peft.get_peft_model_state_dict(self._model, adapter_name=LORA_NAME))
            if strict and set(state) != expected:
                differing = sorted(set(state) ^ expected)
                raise InputError(f"the LoRA weights do not match this adapter's layers ({len(differing)} names differ, "
                                 f"e.g. {differing[0]!r}); load them with the adapter config they were saved with")
            peft.set_peft_model_state_dict(self._model, state, adapter_name=LORA_NAME)
        else:
            self._state = dict(state)

    def train(self, mode: bool = True) -> LoraAdapter:
        return self  # no dropout; the weights live in the model

    def eval(self) -> LoraAdapter:
        return self

    def to(self, *_args, **_kwargs) -> LoraAdapter:
        return self  # moves with the model

    def save(self, path: str | os.PathLike[str], *, base_digest: str, extra: dict | None = None) -> Path:
        return _save_folder(path, self.state_dict(), self.config, base_digest, extra)


def make_adapter(model, config: AdapterConfig, *, seed: int = 0) -> Adapter | LoraAdapter:
    """The student's adapter for ``model``, of ``config.kind``, not yet attached."""
    kind = LoraAdapter if config.kind == "lora" else Adapter
    return kind.for_model(model, config, seed=seed)


def _save_folder(path, state: dict[str, torch.Tensor], config: AdapterConfig, base_digest: str,
                 extra: dict | None) -> Path:
    from safetensors.torch import save_file

    target = Path(path)
    target.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.detach().to("cpu").contiguous() for name, tensor in state.items()},
              str(target / ADAPTER_WEIGHTS))
    record = {"format": FORMAT, "config": asdict(config), "base_weights_fingerprint": base_digest, **(extra or {})}
    from redgraph.data.files import write_file

    write_file(target / ADAPTER_CONFIG, json.dumps(record, indent=2) + "\n", what="adapter config")
    return target


def base_fingerprint(model) -> str:
    """A fingerprint of a model's weights, the same wherever they were loaded from: sha256 over every
    tensor's name, shape, dtype and up to 4,096 of its values, evenly spaced (quick even for 7B
    models; it tells different weights apart, it is not a full digest)."""
    import hashlib

    hasher = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // 4096)
        sample = flat[::step][:4096].to("cpu").float().contiguous()
        hasher.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        hasher.update(sample.numpy().tobytes())
    return hasher.hexdigest()


def load_adapter(lvlm, path: str | os.PathLike[str], *, check_base: bool = True) -> Adapter | LoraAdapter:
    """Load the adapter folder at ``path`` and attach it to ``lvlm``'s model.

    Raises:
        InputError: ``path`` is not an adapter folder, or (with ``check_base``) it was trained on
            other base weights than ``lvlm``'s.
    """
    from safetensors.torch import load_file

    folder = Path(path)
    config_file, weights_file = folder / ADAPTER_CONFIG, folder / ADAPTER_WEIGHTS
    if not config_file.is_file() or not weights_file.is_file():
        raise InputError(f"{os.fspath(path)!r} is not an adapter folder: it needs {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS} "
                         "(written by `redgraph distill`)")
    try:
        record = json.loads(config_file.read_text())
        config = AdapterConfig(**record["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{config_file} cannot be read as an adapter config ({exc})") from exc
    if record.get("format") != FORMAT:
        raise InputError(f"{config_file} is not a redgraph SDRT adapter (format {record.get('format')!r})")
    mine = base_fingerprint(lvlm.model) if check_base else None
    if check_base and record.get("base_weights_fingerprint") != mine:
        raise InputError(f"the adapter in {os.fspath(path)!r} was trained on base weights "
                         f"{str(record.get('base_weights_fingerprint'))[:12]}..., not these ({mine[:12]}...); "
                         "load it on the model it was distilled from")
    adapter = make_adapter(lvlm.model, config)
    adapter.load_state_dict(load_file(str(weights_file)), strict=True)
    return adapter.attach(lvlm.model)
