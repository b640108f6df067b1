"""One vision-tower pass per picture: each image's features, computed alone and kept for the next use.

One graph run shows the same picture to the model four times: the reasoner's prompt, the critic's
probe prefix, the critic's picture-range check and RED's image branch. Each used to send it through
the vision tower again (24-34 ms of a 0.3-0.4 s run on the embedded model). Here each prefill of a
Qwen2-VL-family model asks :func:`vision_inputs` for its images' features: an image seen before, by
the same weights, is not computed again, and the forward takes the features instead of the pixels
(transformers' ``mm_encoder_outputs``).

Same results with or without the cache: every image's features are computed alone, never batched
with other images (so what a run gets does not depend on which other runs joined its forward, or on
which of them filled the cache). The cache is used only where nothing could tell the difference:

- only under ``torch.inference_mode`` and in eval mode (training forwards, and any forward that
  keeps gradients, always run the vision tower, and no inference tensor reaches them);
- only while no forward hook watches the vision tower (an SDRT adapter reads its output; a hook
  would miss a pass that did not happen);
- entries are dropped when the vision tower's weights change (a parameter is replaced, moved or
  written in place: an optimiser step, ``load_state_dict``, ``to``).

Families: Qwen2-VL and Qwen2.5-VL (the embedded model's family and the usual local LVLMs), whose
images are rows of patches with a (t, h, w) grid each. Other families run their vision tower as
before.

Example:
    >>> cache = vision_cache_of(lvlm.model)  # doctest: +SKIP
    >>> cache.hits, cache.misses  # doctest: +SKIP
    (3, 1)
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable

import torch

FAMILIES = ("qwen2_vl", "qwen2_5_vl")
CAPACITY = 32  # pictures kept per model: 8 concurrent runs of different pictures use each about 4 times

_CACHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {kind: its store}
_CACHES_LOCK = threading.Lock()


class PictureStore:
    """What one model made of its recent pictures, by a digest of the picture's inputs: the least
    recently used entry leaves first (beyond ``capacity`` entries or ``max_bytes`` bytes), and all
    leave when the weights they were made with change (:func:`weights_fingerprint`).

    Attributes:
        enabled: False makes every entry afresh (what benchmarks compare with).
        hits, misses: entries served and made, since the model was loaded.
    """

    def __init__(self, capacity: int, max_bytes: int | None = None) -> None:
        self.enabled = True
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[bytes, tuple[object, int]] = OrderedDict()  # key -> (entry, bytes)
        self._weights: int | None = None
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _find(self, key: bytes, weights: int):
        """The entry of ``key`` made with ``weights`` (a hit), or None."""
        with self._lock:
            if weights != self._weights:
                self._entries.clear()
                self._weights = weights
            found = self._entries.get(key)
            if found is None:
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return found[0]

    def _keep(self, key: bytes, weights: int, entry, size: int = 0) -> None:
        """Count a miss and keep ``entry``, unless the weights changed while it was made."""
        with self._lock:
            self.misses += 1
            if weights != self._weights or (self.max_bytes is not None and size > self.max_bytes):
                return
            self._entries[key] = (entry, size)
            while len(self._entries) > self.capacity or (
                    self.max_bytes is not None and sum(size for _, size in self._entries.values()) > self.max_bytes):
                self._entries.popitem(last=False)

    def _count_hit(self) -> None:
        with self._lock:
            self.hits += 1


class VisionCache(PictureStore):
    """The vision features of one model's recent pictures, one entry per picture."""

    def __init__(self, model, capacity: int = CAPACITY) -> None:
        super().__init__(capacity)
        self._inner = model.model

    def usable(self) -> bool:
        """Whether a forward now may take cached features (see the module docstring)."""
        visual = self._inner.visual
        return self.enabled and torch.is_inference_mode_enabled() and not visual.training and not watched(visual)

    def features(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each image's merged visual tokens ((tokens_i, D) per image, in order), as the model's own
        ``get_image_features`` gives them for that image alone. Call where :meth:`usable`."""
        patches = image_grid_thw.prod(-1).tolist()  # rows of pixel_values per image
        weights = weights_fingerprint(self._inner.visual)
        result, computed = [], {}
        for image, grid in zip(torch.split(pixel_values, patches), image_grid_thw):
            key = tensors_key(image, grid)
            if key in computed:  # the same picture twice in one call
                entry = computed[key]
                self._count_hit()
            else:
                entry = self._find(key, weights)
            if entry is None:
                output = self._inner.get_image_features(image, grid.view(1, -1), return_dict=True)
                entry = tuple(output.pooler_output)
                self._keep(key, weights, entry)
            computed[key] = entry
            result.extend(entry)
        return tuple(result)


def per_model(model, kind: str, make: Callable[[], object]):
    """The one object of ``kind`` kept for ``model`` (made by ``make`` the first time); it goes
    with the model."""
    with _CACHES_LOCK:
        kinds = _CACHES.get(model)
        if kinds is None:
            kinds = _CACHES[model] = {}
        if kind not in kinds:
            kinds[kind] = make()
        return kinds[kind]


def weights_fingerprint(module: torch.nn.Module) -> int:
    """Changes when one of ``module``'s weights is replaced, moved or written in place."""
    return hash(tuple((id(t), t.data_ptr(), 0 if t.is_inference() else t._version)
                      for t in (*module.parameters(), *module.buffers())))


def watched(module: torch.nn.Module) -> bool:
    """Whether a forward hook (global, or on ``module`` or a part of it) would see its forwards."""
    nn_module = torch.nn.modules.module
    if nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())


def tensors_key(*tensors: torch.Tensor) -> bytes:
    """A digest of the tensors' shapes, dtypes and bytes."""
    hasher = hashlib.blake2b(digest_size=20)
    for tensor in tensors:
        data = tensor.detach().to("cpu").contiguous()
        hasher.update(repr((str(data.dtype), tuple(data.shape))).encode())
        hasher.update(data.view(torch.uint8).numpy())
    return hasher.digest()


def vision_cache_of(model) -> VisionCache | None:
    """The one :class:`VisionCache` of ``model``, or None where its family is not served."""
    if getattr(getattr(model, "config", None), "model_type", None) not in FAMILIES:
        return None
    inner = getattr(model, "model", None)
    if not (hasattr(inner, "get_image_features") and hasattr(inner, "visual") and _takes_features(type(model))):
        return None
    return per_model(model, "vision", lambda: VisionCache(model))


@functools.cache
def _takes_features(model_type: type) -> bool:
    return "mm_encoder_outputs" in inspect.signature(model_type.forward).parameters


def vision_inputs(model, inputs: dict) -> dict:
    """``inputs`` of a forward with the images' features in place of their pixels, where the cache
    serves (:func:`vision_cache_of`, :meth:`VisionCache.usable`); else ``inputs`` unchanged."""
    pixel_values, grid = inputs.get("pixel_values"), inputs.get("image_grid_thw")
    if pixel_values is None or grid is None:
        return inputs
    cache = vision_cache_of(model)
    if cache is None or not cache.usable():
        return inputs
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    features = cache.features(pixel_values, grid)
    rest = {key: value for key, value in inputs.items() if key != "pixel_values"}
    return {**rest, "mm_encoder_outputs": {"image": BaseModelOutputWithPooling(pooler_output=features)}}
