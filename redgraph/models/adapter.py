"""The student for SDRT self-distillation, of either kind, made or loaded; the base model stays frozen.

- ``kind="sdrt"`` (:class:`Adapter`, in :mod:`redgraph.models.intervention`): a LoReFT-style
  representation intervention at chosen language layers and a gated vision-language skip.
- ``kind="lora"`` (:class:`LoraAdapter`, in :mod:`redgraph.models.lora`): LoRA through ``peft``
  on the query and value projections, injected in place.

Both start as exactly no change and act on the loaded model itself, so ``model.generate``, RED,
the critic and the graph run on the adapted model unchanged. Both save a small folder
(:mod:`redgraph.models.adapter_files`) that carries a fingerprint of the base weights it was
trained on; :func:`load_adapter` refuses it on others.

Example:
    >>> adapter = make_adapter(lvlm.model, AdapterConfig(layers=(2,), rank=4, skip_layer=3))  # doctest: +SKIP
    >>> adapter.attach(lvlm.model)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from redgraph.errors import InputError
from redgraph.models.adapter_files import (ADAPTER_CONFIG, ADAPTER_WEIGHTS, FORMAT, KINDS, AdapterConfig,
                                           base_fingerprint, language_layers, vision_blocks)
from redgraph.models.intervention import Adapter
from redgraph.models.lora import LoraAdapter

__all__ = ["ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "FORMAT", "KINDS", "Adapter", "AdapterConfig", "LoraAdapter",
           "base_fingerprint", "language_layers", "load_adapter", "make_adapter", "vision_blocks"]


def make_adapter(model, config: AdapterConfig, *, seed: int = 0) -> Adapter | LoraAdapter:
    """The student's adapter for ``model``, of ``config.kind``, not yet attached."""
    kind = LoraAdapter if config.kind == "lora" else Adapter
    return kind.for_model(model, config, seed=seed)


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
