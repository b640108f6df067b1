"""The LoRA student (``kind="lora"``) through ``peft``: low-rank updates of the query and value
projections of chosen language layers (and, with ``vision_layers``, of chosen vision blocks' attention
and MLP projections), injected into the model in place (no wrapper class, so RED
and the graph see the same model), with B starting at zero (exactly no change). It has the same
interface as the SDRT student (:class:`redgraph.models.intervention.Adapter`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from redgraph.errors import ConfigError, InputError
from redgraph.models.adapter_files import LANGUAGE_MODELS, AdapterConfig, save_folder

LORA_NAME = "redgraph"


def _peft():
    try:
        import peft
    except ImportError:
        raise ConfigError("a LoRA adapter needs peft: pip install 'redgraph[distill]' (or pip install peft)") from None
    return peft


# the projections of a Qwen-VL vision block's MLP, by family: Qwen2-VL; Qwen2.5-VL; Qwen3-VL
VISION_MLP = ("fc1", "fc2", "gate_proj", "up_proj", "down_proj", "linear_fc1", "linear_fc2")


def target_modules(config: AdapterConfig) -> str:
    """The module names LoRA adapts (one regular expression, as peft takes it): the query and value
    projections of ``config.layers``; the attention and MLP projections of ``config.vision_layers``."""
    parts = []
    if config.layers:
        layers = "|".join(str(layer) for layer in config.layers)
        parts.append(rf".*({'|'.join(LANGUAGE_MODELS)})\.layers\.({layers})\.self_attn\.(q_proj|v_proj)")
    if config.vision_layers:
        blocks = "|".join(str(layer) for layer in config.vision_layers)
        parts.append(rf".*visual\.blocks\.({blocks})\.(attn\.(qkv|proj)|mlp\.({'|'.join(VISION_MLP)}))")
    return "|".join(f"(?:{part})" for part in parts)


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
        lora = peft.LoraConfig(r=self.config.rank, lora_alpha=2 * self.config.rank, lora_dropout=0.0,
                               target_modules=target_modules(self.config))
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
        return save_folder(path, self.state_dict(), self.config, base_digest, extra)
