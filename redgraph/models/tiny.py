"""Tiny random LVLMs of real transformers architectures, built offline from configs.

Used by the tests (one per supported family, well under a second to build) and by the
benchmarks (the ``"bench"`` size: 10-20M parameters, 256 image tokens). Weights are random;
the tokenizer is a byte-level BPE trained on a small synthetic corpus, so nothing is downloaded.

Example:
    >>> from redgraph.models.tiny import build_tiny_lvlm
    >>> lvlm = build_tiny_lvlm("qwen2_vl")
    >>> lvlm.family
    'qwen2_vl'
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

import torch

from redgraph.errors import ConfigError
from redgraph.models.processors import image_only_processor_class

FAMILIES = (
    "qwen2_vl",
    "qwen2_5_vl",
    "qwen3_vl",
    "llava_clip",
    "llava_siglip",
    "idefics3",
    "smolvlm",
    "gemma3",
)
Size = Literal["tiny", "bench", "2b", "7b"]

_WORDS = (
    "the a an red blue green yellow purple orange black white circle square triangle star "
    "left right above below next to is are was what which how many color colour shape of in on "
    "image picture photo question answer there bigger smaller larger bar chart tallest shortest "
    "value receipt total title price item yes no zero one two three four five six seven eight "
    "nine ten because so therefore first then step look at count see object region text layout "
    "rationale reason think analyse plan object relation attribute"
).split()

# One chat template for every family: Qwen-style role markers, and the family's own image
# placeholder, which the processor then expands to the right number of image tokens.
_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}IMAGE_PLACEHOLDER"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
ROLE_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@dataclass(frozen=True)
class _Dims:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    image_tokens: int  # per image, a square number; each family derives its image side from it
    vocab: int  # the tokenizer's BPE vocabulary
    model_vocab: int = 0  # embedding rows when more than the tokenizer's (a real model's vocabulary)
    vision_mlp_ratio: int = 2

    @property
    def image_grid(self) -> int:
        return math.isqrt(self.image_tokens)


_SIZES: dict[str, _Dims] = {
    "tiny": _Dims(32, 2, 4, 2, 64, 32, 1, 2, 16, 512),
    # About 10-20M parameters with 256 image tokens: the RED speed benchmark's setting.
    "bench": _Dims(384, 6, 6, 2, 1024, 192, 2, 3, 256, 4096),
    # Random weights at the widths, depths and vocabulary of Qwen2-VL-2B / -7B (2.2B and 8.3B
    # parameters): GPU speed benchmarks at real sizes. Build them on the GPU (``device="cuda"``).
    "2b": _Dims(1536, 28, 12, 2, 8960, 1280, 32, 16, 256, 4096, model_vocab=151_936, vision_mlp_ratio=4),
    "7b": _Dims(3584, 28, 28, 4, 18944, 1280, 32, 16, 256, 4096, model_vocab=151_936, vision_mlp_ratio=4),
}
REAL_SIZES = ("2b", "7b")  # built for Qwen2-VL only


def build_tokenizer(
    special_tokens: list[str], *, vocab_size: int = 512, named: dict | None = None, corpus: list[str] | None = None
):
    """A byte-level BPE fast tokenizer trained on a small synthetic corpus (offline, ~50 ms).

    Args:
        special_tokens: tokens that must each be one id (role markers, image tokens).
        vocab_size: BPE vocabulary size, special tokens included.
        named: extra named special tokens, e.g. ``{"image_token": "<image>"}``; each becomes an
            attribute (``tokenizer.image_token``) as the family's processor expects.
        corpus: extra training texts, added to a generic corpus of common words. Any text still
            encodes (byte-level), this only decides which words get their own tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    corpus = list(corpus or [])
    corpus += [" ".join(rng.choice(_WORDS) for _ in range(12)) + "?" for _ in range(3000)]
    corpus += [f"{rng.randint(0, 999)}.{rng.randint(0, 99)} , : ; ! ( ) [ ] {{ }} \" '" for _ in range(300)]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(dict.fromkeys(special_tokens)),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=named or {},
    )


def build_tiny_lvlm(
    family: str, *, size: Size = "tiny", seed: int = 0, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
):
    """Build a random model of ``family`` through its real transformers classes.

    Args:
        family: one of :data:`FAMILIES`.
        size: ``"tiny"`` for tests (<1 MB), ``"bench"`` for speed benchmarks (10-20M parameters,
            256 image tokens), ``"2b"`` / ``"7b"`` for GPU benchmarks at Qwen2-VL-2B / -7B widths
            (``qwen2_vl`` only).
        seed: seeds the random weights.
        device: where the weights are created (a 7B model is best made on the GPU it runs on).
        dtype: the weights' dtype; None keeps float32.

    Raises:
        ConfigError: ``family`` or ``size`` is unknown, or a real size is asked of another family.
    """
    if family not in FAMILIES:
        raise ConfigError(f"unknown tiny model family {family!r}; choose one of {', '.join(FAMILIES)}")
    if size not in _SIZES:
        raise ConfigError(f"unknown tiny model size {size!r}; choose one of {', '.join(_SIZES)}")
    if size in REAL_SIZES and family != "qwen2_vl":
        raise ConfigError(f"size {size!r} is built for qwen2_vl only, not {family!r}")
    dims = _SIZES[size]
    builder = {
        "qwen2_vl": _qwen,
        "qwen2_5_vl": _qwen,
        "qwen3_vl": _qwen,
        "llava_clip": _llava,
        "llava_siglip": _llava,
        "idefics3": _idefics,
        "smolvlm": _idefics,
        "gemma3": _gemma3,
    }[family]
    torch.manual_seed(seed)
    with torch.device(device):
        model, processor = builder(family, dims)
    if dtype is not None:
        model.to(dtype)
    model.eval()
    from redgraph.models.loading import LVLM

    return LVLM(model=model, processor=processor, name=f"tiny-random-{family}-{size}")


def _text_config(dims: _Dims, tokenizer, **extra) -> dict:
    return dict(
        vocab_size=max(len(tokenizer), dims.model_vocab),
        hidden_size=dims.hidden,
        intermediate_size=dims.intermediate,
        num_hidden_layers=dims.layers,
        num_attention_heads=dims.heads,
        num_key_value_heads=dims.kv_heads,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        **extra,
    )


def chat_template_for(placeholder: str) -> str:
    """The tiny models' chat template, with ``placeholder`` where a family puts its image tokens."""
    return _CHAT_TEMPLATE.replace("IMAGE_PLACEHOLDER", placeholder)


def _qwen(family: str, dims: _Dims):
    import transformers
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    specials = ROLE_TOKENS + ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tokenizer = build_tokenizer(specials, vocab_size=dims.vocab)
    ids = {name: tokenizer.convert_tokens_to_ids(f"<|{name}|>") for name in ("image_pad", "video_pad", "vision_start", "vision_end")}
    head_dim = dims.hidden // dims.heads
    # mrope_section (temporal, height, width) must sum to head_dim / 2.
    quarter = head_dim // 8
    mrope = [head_dim // 2 - 2 * quarter, quarter, quarter]
    patch = 16 if family == "qwen3_vl" else 14
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope}
    if family == "qwen3_vl":
        rope["mrope_interleaved"] = True
    text = _text_config(dims, tokenizer, rope_parameters=rope)
    if family == "qwen3_vl":
        text["head_dim"] = head_dim
    vision = dict(depth=dims.vision_layers, hidden_size=dims.vision_hidden, num_heads=dims.vision_heads,
                  patch_size=patch, spatial_merge_size=2, temporal_patch_size=2, in_channels=3)
    if family == "qwen2_vl":
        # Qwen2-VL's vision hidden_size is the merger's output width, which feeds the text model.
        vision.update(embed_dim=dims.vision_hidden, hidden_size=dims.hidden, mlp_ratio=dims.vision_mlp_ratio)
        config_cls, model_cls = transformers.Qwen2VLConfig, transformers.Qwen2VLForConditionalGeneration
        processor_cls = transformers.Qwen2VLProcessor
    elif family == "qwen2_5_vl":
        vision.update(intermediate_size=dims.vision_hidden * 2, out_hidden_size=dims.hidden,
                      fullatt_block_indexes=[dims.vision_layers - 1], window_size=4 * patch)
        config_cls, model_cls = transformers.Qwen2_5_VLConfig, transformers.Qwen2_5_VLForConditionalGeneration
        processor_cls = transformers.Qwen2_5_VLProcessor
    else:
        vision.update(intermediate_size=dims.vision_hidden * 2, out_hidden_size=dims.hidden,
                      num_position_embeddings=(2 * dims.image_grid) ** 2, deepstack_visual_indexes=[0])
        config_cls, model_cls = transformers.Qwen3VLConfig, transformers.Qwen3VLForConditionalGeneration
        processor_cls = transformers.Qwen3VLProcessor
    config = config_cls(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["image_pad"],
        video_token_id=ids["video_pad"],
        vision_start_token_id=ids["vision_start"],
        vision_end_token_id=ids["vision_end"],
        tie_word_embeddings=False,
    )
    model = model_cls(config)
    side = 2 * patch * dims.image_grid  # 2x2 patches merge into one image token
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=side * side, max_pixels=side * side, patch_size=patch, merge_size=2, temporal_patch_size=2
    )
    processor = image_only_processor_class(processor_cls)(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=chat_template_for("<|vision_start|><|image_pad|><|vision_end|>"),
    )
    return model, processor


def _llava(family: str, dims: _Dims):
    import transformers

    tokenizer = build_tokenizer(ROLE_TOKENS + ["<image>"], vocab_size=dims.vocab)
    patch = 14 if family == "llava_clip" else 16
    side = patch * dims.image_grid
    vision = dict(hidden_size=dims.vision_hidden, intermediate_size=dims.vision_hidden * 2,
                  num_hidden_layers=dims.vision_layers, num_attention_heads=dims.vision_heads,
                  image_size=side, patch_size=patch)
    if family == "llava_clip":
        vision_config = transformers.CLIPVisionConfig(**vision)
        image_processor = transformers.CLIPImageProcessorPil(
            size={"shortest_edge": side}, crop_size={"height": side, "width": side}
        )
        strategy, extra_tokens = "default", 1  # CLIP prepends a CLS token, which "default" drops
    else:
        vision_config = transformers.SiglipVisionConfig(**vision)
        image_processor = transformers.SiglipImageProcessorPil(size={"height": side, "width": side})
        strategy, extra_tokens = "full", 0
    config = transformers.LlavaConfig(
        vision_config=vision_config,
        text_config=transformers.LlamaConfig(**_text_config(dims, tokenizer)),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy=strategy,
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
        tie_word_embeddings=False,
    )
    model = transformers.LlavaForConditionalGeneration(config)
    processor = transformers.LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy=strategy,
        num_additional_image_tokens=extra_tokens,
        chat_template=chat_template_for("<image>"),
    )
    return model, processor


def _idefics(family: str, dims: _Dims):
    import transformers

    grid_tokens = [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    specials = ROLE_TOKENS + ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"]
    tokenizer = build_tokenizer(specials + grid_tokens, vocab_size=dims.vocab + 40)
    patch, scale = 14, 2
    side = patch * scale * dims.image_grid  # pixel shuffle merges scale x scale patches
    image_seq_len = dims.image_tokens
    vision = dict(hidden_size=dims.vision_hidden, intermediate_size=dims.vision_hidden * 2,
                  num_hidden_layers=dims.vision_layers, num_attention_heads=dims.vision_heads,
                  image_size=side, patch_size=patch)
    text = _text_config(dims, tokenizer)
    pil_kwargs = dict(do_image_splitting=False, size={"longest_edge": side}, max_image_size={"longest_edge": side})
    if family == "idefics3":
        config = transformers.Idefics3Config(
            vision_config=vision, text_config=text, scale_factor=scale,
            image_token_id=tokenizer.convert_tokens_to_ids("<image>"), tie_word_embeddings=False,
        )
        model = transformers.Idefics3ForConditionalGeneration(config)
        processor = transformers.Idefics3Processor(
            image_processor=transformers.Idefics3ImageProcessorPil(**pil_kwargs),
            tokenizer=tokenizer, image_seq_len=image_seq_len, chat_template=chat_template_for("<image>"),
        )
    else:
        config = transformers.SmolVLMConfig(
            vision_config=vision, text_config=text, scale_factor=scale,
            image_token_id=tokenizer.convert_tokens_to_ids("<image>"), tie_word_embeddings=False,
        )
        model = transformers.SmolVLMForConditionalGeneration(config)
        processor = image_only_processor_class(transformers.SmolVLMProcessor)(
            image_processor=transformers.SmolVLMImageProcessorPil(**pil_kwargs),
            tokenizer=tokenizer, image_seq_len=image_seq_len, chat_template=chat_template_for("<image>"),
        )
    return model, processor


def _gemma3(family: str, dims: _Dims):
    import transformers

    named = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    tokenizer = build_tokenizer(ROLE_TOKENS + list(named.values()), vocab_size=dims.vocab, named=named)
    patch = 14
    tokens_per_side = dims.image_grid
    side = patch * tokens_per_side
    text = _text_config(dims, tokenizer, head_dim=dims.hidden // dims.heads, sliding_window=4096,
                        query_pre_attn_scalar=dims.hidden // dims.heads)
    config = transformers.Gemma3Config(
        text_config=text,
        vision_config=dict(hidden_size=dims.vision_hidden, intermediate_size=dims.vision_hidden * 2,
                           num_hidden_layers=dims.vision_layers, num_attention_heads=dims.vision_heads,
                           image_size=side, patch_size=patch),
        mm_tokens_per_image=tokens_per_side**2,
        boi_token_index=tokenizer.boi_token_id,
        eoi_token_index=tokenizer.eoi_token_id,
        image_token_index=tokenizer.image_token_id,
        tie_word_embeddings=False,
    )
    model = transformers.Gemma3ForConditionalGeneration(config)
    # Gemma3 zero-initialises its projector, so a random model would ignore the image.
    with torch.no_grad():
        torch.nn.init.normal_(model.model.multi_modal_projector.mm_input_projection_weight, std=0.5)
    processor = transformers.Gemma3Processor(
        image_processor=transformers.Gemma3ImageProcessorPil(size={"height": side, "width": side}),
        tokenizer=tokenizer,
        image_seq_length=tokens_per_side**2,
        chat_template=chat_template_for("<start_of_image>"),
    )
    return model, processor
