"""The adapter folder and what every student kind shares: its config, the layers it may touch,
and the fingerprint of the base weights it was trained on.

A folder is ``adapter_config.json`` (format, config, base fingerprint, and the caller's extra
record such as the training manifest) beside ``adapter.safetensors``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from redgraph.errors import ConfigError, UnsupportedError

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
        vision_layers: with ``kind="lora"``, vision-tower blocks (0-based) whose attention and MLP
            projections LoRA adapts too (Qwen-VL families): what lets the student change what the
            model sees, not only how it words it. Empty: the vision tower stays as it is.
    """

    layers: tuple[int, ...] = (1,)
    rank: int = 4
    skip_layer: int | None = 2
    kind: str = "sdrt"
    vision_layers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "vision_layers", tuple(self.vision_layers))
        if self.vision_layers and self.kind != "lora":
            raise ConfigError(f"vision layers are adapted by a LoRA student; use kind lora (distill train --kind lora, "
                              f"distill adapt --adapter-kind lora), or no vision layers (got {list(self.vision_layers)} "
                              f"with kind {self.kind!r})")
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"rank must be a whole number >= 1, got {self.rank!r}")
        if self.kind not in KINDS:
            raise ConfigError(f"adapter kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "lora":
            if self.skip_layer is not None:
                raise ConfigError(f"a LoRA adapter has no vision skip; pass skip_layer=None (got {self.skip_layer!r})")
            if not self.layers and not self.vision_layers:
                raise ConfigError("a LoRA adapter needs at least one language or vision layer to adapt")
        if not self.layers and self.skip_layer is None and not self.vision_layers:
            raise ConfigError("an adapter with no intervention layer and no skip connection changes nothing; "
                              "give layers, skip_layer or both")

    def check(self, model) -> None:
        count = len(language_layers(model))
        for layer in (*self.layers, *(() if self.skip_layer is None else (self.skip_layer,))):
            if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < count:
                raise ConfigError(f"layer {layer!r} is not a language layer of this model (it has {count}: 0-{count - 1})")
        if self.vision_layers:
            blocks = len(vision_blocks(model))
            for layer in self.vision_layers:
                if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < blocks:
                    raise ConfigError(f"vision layer {layer!r} is not a block of this model's vision tower (it has "
                                      f"{blocks}: 0-{blocks - 1})")



LANGUAGE_MODELS = ("language_model", "text_model")  # where families keep their language model's layers


def language_layers(model) -> nn.ModuleList:
    """The decoder layers of ``model``'s language model (``text_model`` in Idefics3 and SmolVLM)."""
    inner = getattr(model, "model", None)
    for name in LANGUAGE_MODELS:
        layers = getattr(getattr(inner, name, None), "layers", None)
        if layers is not None:
            return layers
    raise UnsupportedError(f"{type(model).__name__} has no language_model.layers to attach an adapter to")


def vision_blocks(model) -> nn.ModuleList:
    """The blocks of a Qwen-VL-family vision tower (``model.visual.blocks``)."""
    blocks = getattr(getattr(getattr(model, "model", None), "visual", None), "blocks", None)
    if blocks is None:
        raise UnsupportedError(f"{type(model).__name__} has no Qwen-VL vision tower (model.visual.blocks) whose layers a "
                               "LoRA student could adapt; adapt its language layers only (no vision layers)")
    return blocks


def save_folder(path, state: dict[str, torch.Tensor], config: AdapterConfig, base_digest: str,
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
