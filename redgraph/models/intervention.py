"""The SDRT student (``kind="sdrt"``): a representation intervention and a vision skip, hooked into
the frozen model.

- The **intervention** at chosen language layers, LoReFT-style: the layer's output hidden state
  ``h`` becomes ``h + Rᵀ(W h + b − R h)``, with ``R`` (rank × width) kept orthonormal and ``W``,
  ``b`` learned. ``W`` starts equal to ``R`` and ``b`` at 0, so an untrained edit is exactly zero.
- The **vision-language skip connection**: each image's pooled vision features, projected to the
  language width, are added to that image's token positions before a later language layer,
  through a gate ``tanh(g)`` with ``g`` starting at 0 (exactly no change). Added at the image's
  positions only, it reaches the answer through attention and the KV cache, so decoding steps and
  text-only rows (RED's rationale branch) need nothing.

Per-forward state is thread-local: two threads decoding with one adapted model do not see each
other's images.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import torch
from torch import nn

from redgraph.errors import ConfigError, UnsupportedError
from redgraph.models.adapter_files import AdapterConfig, language_layers, save_folder

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



def _has_merged_vision_tower(model) -> bool:
    """Whether ``model`` is of the Qwen-VL families, whose vision tower (``model.visual``) the skip reads."""
    return (hasattr(getattr(model, "model", None), "visual")
            and hasattr(getattr(model.config, "vision_config", None), "spatial_merge_size"))


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
        if config.skip_layer is not None and not _has_merged_vision_tower(model):
            raise UnsupportedError(f"the vision skip reads a Qwen-VL-family vision tower (model.visual, with merged "
                                   f"patches); {type(model).__name__} has none: use skip_layer=None (--skip-layer "
                                   "none), or a LoRA student (distill train --kind lora, distill adapt --adapter-kind "
                                   "lora)")
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
        return save_folder(path, self.state_dict(), self.config, base_digest, extra)

