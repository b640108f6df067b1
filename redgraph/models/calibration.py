"""A model's calibration: what its probe answers mean as probabilities, and where its eyes stop.

The critic reads a probe's support (the claimed answer's share among the candidates) as the
probability that the claim is true. That holds only as far as it is measured. A
:class:`Calibration`, fitted on labelled claims of the validation split
(:mod:`redgraph.lab.calibrate`) and saved beside the model's weights, holds:

- ``temperatures``: one per probe family (the claim kinds of the synthetic grammar; ``closed`` and
  ``open`` for probes other decomposers wrote). A probe's candidate shares ``p_i`` become
  ``p_i ** (1 / T) / sum_j p_j ** (1 / T)``, the same as dividing the answers' log-probabilities
  by ``T`` before the softmax.
- ``unsure_below``: a probe whose image answer has a probability (as the model writes it, not
  shared among the candidates) below this is *unsure*: the image cannot tell.
- ``novelty_above`` with a bank of the model's own visual tokens from its training pictures: a
  picture is *novel* when the ``novelty_quantile`` of its tokens' cosine distances to their
  nearest bank token is above this; the model has never seen pictures like it, so no answer of
  its eyes about it is taken as evidence, either way.

Files: ``calibration.json`` and ``novelty.safetensors`` in the model's folder. A model without them
has no calibration (``None``): the critic then uses raw supports and says so in its settings.

Example:
    >>> calibration = Calibration({"bar_value": 1.4}, unsure_below=0.6)
    >>> round(calibration.temper({"7": 0.8, "3": 0.2}, "bar_value")["7"], 3)
    0.729
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from redgraph.errors import ModelLoadError

CALIBRATION_FILE = "calibration.json"
NOVELTY_FILE = "novelty.safetensors"
CALIBRATION_VERSION = 1


@dataclass(frozen=True)
class Calibration:
    """A model's fitted calibration (see the module docstring).

    Attributes:
        temperatures: probe family -> temperature (1 where a family was not fitted).
        unsure_below: image-answer probability under which a probe is unsure (0: never).
        novelty_above: novelty score above which a picture is out of the model's range (None: not fitted).
        novelty_quantile: which quantile of a picture's token distances is its novelty score.
        bank: (N, D) unit-length visual tokens of training pictures, or None.
        fitted: how and on what it was fitted (recorded, shown in traces).
    """

    temperatures: dict[str, float]
    unsure_below: float = 0.0
    novelty_above: float | None = None
    novelty_quantile: float = 0.9
    bank: torch.Tensor | None = field(default=None, repr=False, compare=False)
    fitted: dict[str, Any] = field(default_factory=dict)

    def temper(self, shares: dict[str, float], family: str | None) -> dict[str, float]:
        """Candidate shares after the family's temperature (the same keys, summing to 1)."""
        temperature = self.temperatures.get(family or "", 1.0)
        if temperature == 1.0 or len(shares) < 2:
            return dict(shares)
        logs = torch.tensor([math.log(max(p, 1e-300)) for p in shares.values()], dtype=torch.float64)
        tempered = torch.softmax(logs / temperature, dim=0).tolist()
        return dict(zip(shares, tempered))

    def novelty(self, lvlm, picture) -> float | None:
        """How far ``picture`` lies from the model's training pictures (None without a bank)."""
        if self.bank is None:
            return None
        tokens = visual_tokens(lvlm, picture)  # (T, D), unit length
        distances = 1 - (tokens @ self.bank.to(tokens.dtype).T).max(dim=1).values  # (T,)
        return float(torch.quantile(distances, self.novelty_quantile))

    def is_novel(self, score: float | None) -> bool:
        return score is not None and self.novelty_above is not None and score > self.novelty_above

    def summary(self) -> dict[str, Any]:
        """JSON-ready settings (no bank): what a trace records of the calibration a critic used."""
        return {"version": CALIBRATION_VERSION, "temperatures": dict(self.temperatures),
                "unsure_below": self.unsure_below, "novelty_above": self.novelty_above,
                "novelty_quantile": self.novelty_quantile,
                "bank_tokens": None if self.bank is None else int(self.bank.shape[0]), "fitted": dict(self.fitted)}

    def save(self, folder: str | os.PathLike[str]) -> None:
        """Write ``calibration.json`` (and ``novelty.safetensors`` with a bank) into ``folder``."""
        from safetensors.torch import save

        from redgraph.data.files import write_file

        target = Path(folder)
        if self.bank is not None:
            write_file(target / NOVELTY_FILE, save({"bank": self.bank.to(torch.float16).contiguous()}),
                       what="calibration token bank")
        write_file(target / CALIBRATION_FILE, json.dumps(self.summary(), indent=2) + "\n", what="calibration")


def load_calibration(folder: str | os.PathLike[str] | None) -> Calibration | None:
    """The calibration saved in a model's folder, or None where it has none.

    Raises:
        ModelLoadError: the files are there but unreadable; the message names the file.
    """
    if folder is None or not (Path(folder) / CALIBRATION_FILE).is_file():
        return None
    path = Path(folder) / CALIBRATION_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != CALIBRATION_VERSION:
            raise ValueError(f"version {data.get('version')!r}, expected {CALIBRATION_VERSION}")
        temperatures = {str(k): float(v) for k, v in data["temperatures"].items()}
        if not all(math.isfinite(t) and t > 0 for t in temperatures.values()):
            raise ValueError("temperatures must be positive numbers")
        bank = None
        if data.get("bank_tokens"):
            from safetensors.torch import load_file

            bank = load_file(str(Path(folder) / NOVELTY_FILE))["bank"].float()
        return Calibration(
            temperatures=temperatures, unsure_below=float(data["unsure_below"]),
            novelty_above=None if data.get("novelty_above") is None else float(data["novelty_above"]),
            novelty_quantile=float(data["novelty_quantile"]), bank=bank, fitted=dict(data.get("fitted") or {}),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelLoadError(f"the calibration in {path} is unreadable ({exc}); fit it again with "
                             "python benchmarks/calibration.py --write, or delete it to run uncalibrated") from exc


@torch.inference_mode()
def visual_tokens(lvlm, picture) -> torch.Tensor:
    """The model's visual tokens of ``picture`` as the language model receives them, unit length: (T, D)."""
    from redgraph.models.images import ready_image
    from redgraph.models.vision_cache import vision_cache_of

    picture = ready_image(picture, max_pixels=lvlm.max_image_pixels)
    inputs = lvlm.processor.image_processor(images=[picture], return_tensors="pt")
    inputs = {k: v.to(lvlm.device) for k, v in inputs.items()}
    cache = vision_cache_of(lvlm.model)
    if cache is not None and cache.usable() and set(inputs) == {"pixel_values", "image_grid_thw"}:
        features = cache.features(inputs["pixel_values"], inputs["image_grid_thw"])  # the picture's other uses share it
    else:
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(lvlm.model.dtype)
        features = lvlm.model.get_image_features(**inputs)
    if not isinstance(features, (torch.Tensor, tuple, list)):  # a model output: the merged tokens, else the last layer
        pooled = getattr(features, "pooler_output", None)
        features = pooled if pooled is not None else features.last_hidden_state
    if isinstance(features, (tuple, list)):
        features = torch.cat([f.reshape(-1, f.shape[-1]) for f in features])
    return torch.nn.functional.normalize(features.reshape(-1, features.shape[-1]).float(), dim=-1)
