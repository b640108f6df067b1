"""The SDRT student's adapter: identity when untrained, round-trips through its folder, and RED,
generate and packed prefill run on the adapted model unchanged (DESIGN invariants 1 and 2 hold)."""

from __future__ import annotations

import pytest
import torch

from redgraph.decoding import REDConfig, REDDecoder, REDRequest
from redgraph.errors import ConfigError, InputError
from redgraph.models import build_tiny_lvlm, load_lvlm
from redgraph.models.adapter import Adapter, AdapterConfig, LoraAdapter, base_fingerprint, load_adapter
from tests.conftest import scene

QUESTION = "what color is the circle?"
RATIONALE = "the circle is red so the answer is red"


def _fresh():
    return build_tiny_lvlm("qwen2_vl", seed=3)  # its own copy: adapters hook into the model


def _logits(lvlm, inputs):
    with torch.no_grad():
        return lvlm.model(**inputs).logits


def _trained(adapter: Adapter) -> Adapter:
    """Give every part of the adapter a non-zero effect, as training would."""
    with torch.no_grad():
        for module in adapter.interventions.values():
            module.learned.weight.add_(0.3 * torch.randn_like(module.learned.weight))
            module.learned.bias.add_(0.5)
        adapter.skip.gate.fill_(0.8)
    return adapter


def test_an_untrained_adapter_changes_nothing_exactly():
    lvlm = _fresh()
    image = lvlm.encode_image_branch(scene(), QUESTION)
    text = lvlm.encode_rationale_branch(RATIONALE, QUESTION)
    before = _logits(lvlm, image), _logits(lvlm, text)
    adapter = Adapter.for_model(lvlm.model, AdapterConfig(layers=(0, 1), rank=3, skip_layer=1)).attach(lvlm.model)
    assert torch.equal(_logits(lvlm, image), before[0]) and torch.equal(_logits(lvlm, text), before[1])
    _trained(adapter)
    assert not torch.allclose(_logits(lvlm, image), before[0])
    adapter.detach()
    assert torch.equal(_logits(lvlm, image), before[0])


def test_the_skip_touches_only_rows_with_an_image():
    lvlm = _fresh()
    text = lvlm.encode_rationale_branch(RATIONALE, QUESTION)
    before = _logits(lvlm, text)
    adapter = Adapter.for_model(lvlm.model, AdapterConfig(layers=(), skip_layer=1)).attach(lvlm.model)
    adapter.skip.gate.data.fill_(1.0)
    assert torch.equal(_logits(lvlm, text), before)
    assert not torch.allclose(_logits(lvlm, lvlm.encode_image_branch(scene(), QUESTION)),
                              _logits(build_tiny_lvlm("qwen2_vl", seed=3), lvlm.encode_image_branch(scene(), QUESTION)))


def test_the_adapter_folder_round_trips_and_names_its_base(tmp_path):
    lvlm = _fresh()
    adapter = _trained(Adapter.for_model(lvlm.model, AdapterConfig(layers=(1,), rank=2, skip_layer=0)))
    adapter.attach(lvlm.model)
    inputs = lvlm.encode_image_branch(scene("green"), QUESTION)
    expected = _logits(lvlm, inputs)
    adapter.save(tmp_path / "adapter", base_digest=base_fingerprint(lvlm.model))

    again = _fresh()
    load_adapter(again, tmp_path / "adapter")
    assert torch.equal(_logits(again, inputs), expected)
    other = build_tiny_lvlm("qwen2_vl", seed=4)
    with pytest.raises(InputError, match="was trained on base weights"):
        load_adapter(other, tmp_path / "adapter")
    with pytest.raises(InputError, match="is not an adapter folder"):
        load_adapter(other, tmp_path)

    lvlm.save(tmp_path / "base")
    loaded = load_lvlm(tmp_path / "base", adapter=tmp_path / "adapter")
    assert torch.allclose(_logits(loaded, inputs), expected, atol=1e-5)
    assert loaded.adapter_path == str(tmp_path / "adapter")


def test_red_invariants_hold_on_an_adapted_model():
    lvlm = _fresh()
    _trained(Adapter.for_model(lvlm.model, AdapterConfig(layers=(0,), rank=2, skip_layer=1))).attach(lvlm.model)
    inputs = lvlm.encode_image_branch(scene(), QUESTION)
    with torch.no_grad():
        greedy = lvlm.model.generate(**inputs, max_new_tokens=8, do_sample=False)[0, inputs["input_ids"].shape[1]:]
    red = REDDecoder(lvlm, REDConfig(rationale_weight=0.0, max_new_tokens=8)).decode(scene(), QUESTION, [RATIONALE])
    assert red.token_ids == greedy.tolist()[: len(red.token_ids)] and len(red.token_ids) >= 4
    requests = [REDRequest(scene("red"), QUESTION, (RATIONALE,)), REDRequest(scene("blue", (80, 40)), "is there a square?")]
    packed = REDDecoder(lvlm, REDConfig(max_new_tokens=6, pack_tokens=4096)).decode_batch(requests)
    alone = [REDDecoder(lvlm, REDConfig(max_new_tokens=6, batch_branches=False)).decode_batch([r])[0] for r in requests]
    for a, b in zip(packed, alone):
        assert a.token_ids == b.token_ids
        assert all(abs(x.image_logprob - y.image_logprob) < 1e-4 for x, y in zip(a.tokens, b.tokens))


def test_bad_adapter_settings_are_named():
    lvlm = _fresh()
    with pytest.raises(ConfigError, match="layer 7 is not a language layer"):
        Adapter.for_model(lvlm.model, AdapterConfig(layers=(7,)))
    with pytest.raises(ConfigError, match="rank must be"):
        AdapterConfig(rank=0)
    with pytest.raises(ConfigError, match="changes nothing"):
        AdapterConfig(layers=(), skip_layer=None)


def test_the_vision_skip_on_a_family_it_cannot_read_is_refused_by_name_and_the_intervention_alone_runs():
    from redgraph.errors import UnsupportedError

    model = build_tiny_lvlm("llava_clip", seed=3).model
    with pytest.raises(UnsupportedError, match="LlavaForConditionalGeneration has none: use skip_layer=None"):
        Adapter.for_model(model, AdapterConfig(layers=(0,), skip_layer=1))
    adapter = Adapter.for_model(model, AdapterConfig(layers=(0,), skip_layer=None)).attach(model)
    assert adapter.attached
    adapter.detach()


def test_the_decode_command_takes_an_adapter(tmp_path):
    import json

    from typer.testing import CliRunner

    from redgraph.cli import app

    lvlm = _fresh()
    lvlm.save(tmp_path / "base")
    adapter = _trained(Adapter.for_model(lvlm.model, AdapterConfig(layers=(1,), rank=2, skip_layer=0)))
    adapter.save(tmp_path / "adapter", base_digest=base_fingerprint(lvlm.model))
    scene().save(tmp_path / "scene.png")
    args = ["decode", str(tmp_path / "scene.png"), QUESTION, "--model", str(tmp_path / "base"), "--json",
            "--max-new-tokens", "4"]
    plain = CliRunner().invoke(app, args)
    adapted = CliRunner().invoke(app, [*args, "--adapter", str(tmp_path / "adapter")])
    assert plain.exit_code == adapted.exit_code == 0, adapted.output
    first = [t["image_logprob"] for t in json.loads(plain.stdout)["tokens"]]
    second = [t["image_logprob"] for t in json.loads(adapted.stdout)["tokens"]]
    assert first != second  # the adapter was applied
    wrong = CliRunner().invoke(app, [*args, "--adapter", str(tmp_path)])
    assert wrong.exit_code == 2 and "not an adapter folder" in wrong.output


def _lora_trained(adapter: LoraAdapter) -> LoraAdapter:
    with torch.no_grad():
        for parameter in adapter.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    return adapter


def test_a_lora_student_is_exact_when_new_round_trips_and_detaches_cleanly(tmp_path):
    lvlm = _fresh()
    inputs = lvlm.encode_image_branch(scene("green"), QUESTION)
    base_state = {k: v.clone() for k, v in lvlm.model.state_dict().items()}
    before = _logits(lvlm, inputs)
    config = AdapterConfig(layers=(0, 1), rank=2, skip_layer=None, kind="lora")
    adapter = LoraAdapter.for_model(lvlm.model, config).attach(lvlm.model)
    assert torch.equal(_logits(lvlm, inputs), before)  # B starts at zero: exactly the base
    assert type(lvlm.model).__name__ == "Qwen2VLForConditionalGeneration"  # injected in place, not wrapped
    _lora_trained(adapter)
    expected = _logits(lvlm, inputs)
    assert not torch.allclose(expected, before)
    adapter.save(tmp_path / "lora", base_digest=base_fingerprint(_fresh().model))
    adapter.detach()
    assert torch.equal(_logits(lvlm, inputs), before)
    state = lvlm.model.state_dict()
    assert state.keys() == base_state.keys() and all(torch.equal(state[k], base_state[k]) for k in state)
    lvlm.save(tmp_path / "base")
    adapter.attach(lvlm.model)  # detached weights come back with it
    assert torch.equal(_logits(lvlm, inputs), expected)
    with pytest.raises(ConfigError, match="detach it before saving"):
        lvlm.save(tmp_path / "adapted")
    loaded = load_lvlm(tmp_path / "base", adapter=tmp_path / "lora")
    assert torch.allclose(_logits(loaded, inputs), expected, atol=1e-5)
    red = REDDecoder(loaded, REDConfig(rationale_weight=0.0, max_new_tokens=6)).decode(scene("green"), QUESTION, [RATIONALE])
    with torch.no_grad():
        greedy = loaded.model.generate(**inputs, max_new_tokens=6, do_sample=False)[0, inputs["input_ids"].shape[1]:]
    assert red.token_ids == greedy.tolist()[: len(red.token_ids)] and red.token_ids
    other = _fresh()
    fewer = LoraAdapter.for_model(other.model, AdapterConfig(layers=(0,), rank=2, skip_layer=None, kind="lora"))
    with pytest.raises(InputError, match="do not match this adapter's layers"):
        fewer.attach(other.model).load_state_dict(adapter.state_dict())
    with pytest.raises(ConfigError, match="no vision skip"):
        AdapterConfig(layers=(0,), kind="lora")
    with pytest.raises(ConfigError, match="adapter kind must be"):
        AdapterConfig(kind="prefix")


def test_a_vision_lora_changes_what_the_model_sees_and_the_vision_cache_follows_it(tmp_path):
    from redgraph.errors import UnsupportedError
    from redgraph.models.adapter import vision_blocks
    from redgraph.models.vision_cache import vision_cache_of, vision_inputs

    lvlm = _fresh()
    model = lvlm.model
    inputs = lvlm.encode_image_branch(scene("green"), QUESTION)

    def seen():  # as a run's prefill sees the picture: its features from the model's vision cache
        with torch.inference_mode():
            return model(**vision_inputs(model, dict(inputs))).logits

    before = seen()
    assert vision_cache_of(model).misses == 1 and torch.allclose(before, _logits(lvlm, inputs), atol=1e-6)
    config = AdapterConfig(layers=(), rank=2, skip_layer=None, kind="lora", vision_layers=(0,))
    adapter = LoraAdapter.for_model(model, config).attach(model)
    adapted = {name.rsplit(".lora_", 1)[0] for name, _ in model.named_parameters() if ".lora_" in name}
    assert adapted and all(name.startswith("model.visual.blocks.0.") for name in adapted)
    assert torch.equal(seen(), before)  # B starts at zero: exactly the base
    _lora_trained(adapter)
    after = seen()
    assert not torch.allclose(after, before)  # the cache did not serve the base tower's features
    assert torch.allclose(after, _logits(lvlm, inputs), atol=1e-5)  # and equals a pass without the cache
    adapter.save(tmp_path / "vision", base_digest=base_fingerprint(_fresh().model))
    adapter.detach()
    assert torch.allclose(seen(), before, atol=1e-6)
    loaded = _fresh()
    load_adapter(loaded, tmp_path / "vision")
    assert torch.allclose(_logits(loaded, inputs), after, atol=1e-5)
    blocks = len(vision_blocks(model))
    with pytest.raises(ConfigError, match=f"vision layer {blocks} is not a block of this model's vision tower"):
        LoraAdapter.for_model(_fresh().model, AdapterConfig(layers=(), skip_layer=None, kind="lora",
                                                            vision_layers=(blocks,)))
    with pytest.raises(ConfigError, match="vision layers are adapted by a LoRA student"):
        AdapterConfig(vision_layers=(0,))
    with pytest.raises(UnsupportedError, match="LlavaForConditionalGeneration has no Qwen-VL vision tower"):
        LoraAdapter.for_model(build_tiny_lvlm("llava_clip").model,
                              AdapterConfig(layers=(), skip_layer=None, kind="lora", vision_layers=(0,)))
