"""Prefilling many rows in one forward: rows are *packed* end to end into a few sequences, each
row attending only to itself (a block-diagonal causal mask) at its own positions, so a short
rationale prompt is never padded to the length of a long image prompt and the vision tower runs
once over every image. Where packing is not exact for a family (sliding-window layers,
bidirectional image attention, attention kernels that take no custom mask: :func:`pack_blocker`),
each row is prefilled alone (:func:`redgraph.decoding.rows.prefill_row`); same results.

Shapes: T prompt length; V vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from redgraph.decoding.rows import (
    NOT_MODEL_KWARGS,
    RowGroup,
    cache_of,
    mrope_model,
    prefill_forward,
    prefill_positions,
    returned_cache,
)


def auto_pack_tokens(device) -> int:
    """The packing bin size RED uses on ``device`` unless told otherwise (see BENCHMARKS.md).

    On a GPU a forward over more tokens costs little more, so every row goes into one forward.
    On CPU the work is compute-bound and a packed row loses the causal attention kernel's savings,
    so only short rows (where the cost of a forward of their own dominates) are packed.
    """
    return 4096 if torch.device(device).type == "cuda" else 256


def pack_blocker(model, rows: list) -> str | None:
    """Why ``rows`` (model inputs, one row each) cannot be prefilled packed into one forward, or None.

    Packing relies on a custom 4-D mask (each row attends only to itself) and on every layer
    attending over the whole row, so it is refused for attention kernels that ignore custom masks,
    for sliding-window layers, for families whose image tokens attend bidirectionally
    (``token_type_ids``), and for images of different sizes in families that stack them.
    """
    implementation = getattr(model.config, "_attn_implementation", None)
    if implementation not in ("sdpa", "eager"):
        return f"attention implementation {implementation!r} takes no custom 4-D mask"
    text_config = model.config.get_text_config()
    layer_types = getattr(text_config, "layer_types", None) or ()
    if any(kind != "full_attention" for kind in layer_types):
        return f"{type(model).__name__} has {sorted(set(layer_types) - {'full_attention'})[0]} layers"
    if getattr(text_config, "sliding_window", None) and getattr(text_config, "use_sliding_window", True):
        return f"{type(model).__name__} has sliding-window attention"
    if any("token_type_ids" in inputs for inputs in rows):
        return "image tokens attend bidirectionally (token_type_ids)"
    for key in _IMAGE_KEYS:
        shapes = {_image_shape(inputs, key) for inputs in rows if key in inputs}
        if len(shapes) > 1:
            return f"images of different sizes in {key}"
    return None


_IMAGE_KEYS = ("pixel_values", "pixel_attention_mask", "image_grid_thw", "image_sizes")


_PER_ROW_KEYS = ("pixel_values", "pixel_attention_mask")  # (rows, images, ...) where pixel_attention_mask is given


def _image_shape(inputs, key: str) -> tuple[int, ...]:
    """The shape of one image of ``key`` (what must agree for images to be stacked)."""
    skip = 2 if "pixel_attention_mask" in inputs and key in _PER_ROW_KEYS else 1
    return tuple(inputs[key].shape[skip:])


def prefill_packed(model, rows: list, *, pack_tokens: int) -> list[RowGroup]:
    """Prefill every row of ``rows`` in one forward and return each as a group of one.

    Rows are placed end to end into bins of ``max(pack_tokens, longest row)`` tokens (first fit,
    longest first); the bins form one batch, right-padded to the fullest. A 4-D mask lets each
    token attend only to earlier tokens of its own row, positions restart at every row (Qwen's 3-D
    positions computed per row by the model's own ``get_rope_index``), and the images of all rows
    go through the vision tower together. The results equal :func:`prefill_row` per row up to float
    rounding; call :func:`pack_blocker` first.
    """
    lengths = [int(inputs["input_ids"].shape[1]) for inputs in rows]
    capacity = max(pack_tokens, max(lengths))
    bins: list[list[int]] = []
    room: list[int] = []
    for row in sorted(range(len(rows)), key=lambda r: -lengths[r]):
        target = next((b for b, free in enumerate(room) if free >= lengths[row]), None)
        if target is None:
            bins.append([])
            room.append(capacity)
            target = len(bins) - 1
        bins[target].append(row)
        room[target] -= lengths[row]
    width = max(capacity - free for free in room)
    first = rows[0]["input_ids"]
    device = first.device
    input_ids = torch.zeros((len(bins), width), dtype=first.dtype, device=device)  # (P, W) P bins
    token_values = {  # per-token inputs besides the ids (mm_token_type_ids), zero in the padding
        key: torch.zeros((len(bins), width), dtype=value.dtype, device=device)
        for inputs in rows for key, value in inputs.items()
        if key not in NOT_MODEL_KWARGS and key not in _IMAGE_KEYS and value.shape == inputs["input_ids"].shape
    }
    segment = torch.full((len(bins), width), -1, dtype=torch.long, device=device)  # row of each slot
    mrope = mrope_model(model) is not None
    positions = torch.zeros((4, len(bins), width) if mrope else (len(bins), width), dtype=torch.long, device=device)
    images: dict[str, list[torch.Tensor]] = {}
    places: dict[int, tuple[int, int]] = {}  # row -> (bin, start)
    deltas: dict[int, torch.Tensor | None] = {}
    for b, members in enumerate(bins):
        start = 0
        for row in members:
            inputs, length = rows[row], lengths[row]
            end = start + length
            input_ids[b, start:end] = inputs["input_ids"][0]
            for key in token_values:
                if key in inputs:
                    token_values[key][b, start:end] = inputs[key][0]
            segment[b, start:end] = row
            mask = inputs.get("attention_mask")
            if mask is None:
                mask = torch.ones_like(inputs["input_ids"])
            row_positions, deltas[row] = prefill_positions(model, inputs, mask)
            positions[..., b, start:end] = row_positions[..., 0, :] if mrope else row_positions[0]
            for key in _IMAGE_KEYS:
                if key in inputs:
                    images.setdefault(key, []).append(inputs[key])
            places[row] = (b, start)
            start = end
        if start < width:
            # Padding repeats the bin's last token (never an image placeholder) and attends to itself only.
            input_ids[b, start:] = input_ids[b, start - 1]
    per_row = "pixel_attention_mask" in images  # Idefics-style: (1, images, ...), images on axis 1
    stacked = {key: torch.cat(parts, dim=1 if per_row and key in _PER_ROW_KEYS else 0) for key, parts in images.items()}
    slots = torch.arange(width, device=device)
    same_row = segment.unsqueeze(2) == segment.unsqueeze(1)  # (P, W, W)
    allowed = same_row & (slots.view(1, 1, width) <= slots.view(1, width, 1))
    allowed |= torch.eye(width, dtype=torch.bool, device=device).unsqueeze(0)  # padding attends to itself
    dtype = model.get_input_embeddings().weight.dtype  # the text layers' dtype, which the mask must match
    mask4d = torch.zeros((len(bins), 1, width, width), dtype=dtype, device=device)
    mask4d.masked_fill_(~allowed.unsqueeze(1), torch.finfo(dtype).min)
    last = {row: places[row][1] + lengths[row] - 1 for row in range(len(rows))}
    keep = sorted(set(last.values()))
    out = prefill_forward(model, input_ids, mask4d, positions, torch.tensor(keep, device=device),
                           {**token_values, **stacked})
    cache = returned_cache(out)
    column = {slot: i for i, slot in enumerate(keep)}
    groups = []
    for row, length in enumerate(lengths):
        b, start = places[row]
        keys = [layer.keys[b : b + 1, :, start : start + length] for layer in cache.layers]
        values = [layer.values[b : b + 1, :, start : start + length] for layer in cache.layers]
        groups.append(RowGroup(
            model=model,
            cache=cache_of(model, keys, values),
            attention_mask=torch.ones((1, length), dtype=torch.long, device=device),
            lengths=torch.tensor([length], dtype=torch.long, device=device),
            rope_deltas=None if deltas[row] is None else deltas[row].view(1).to(device),
            logprobs=F.log_softmax(out.logits[b : b + 1, column[last[row]], :].float(), dim=-1),  # (1, V)
        ))
    return groups
