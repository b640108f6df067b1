"""Loading checkpoints: round trips for every family, and clear errors for bad ones."""

import json

import pytest

from redgraph.decoding import REDConfig, REDDecoder
from redgraph.errors import ConfigError, ModelLoadError, UnsupportedError
from redgraph.models import FAMILIES, build_tiny_lvlm, load_lvlm
from redgraph.models.processors import has_torchvision
from tests.conftest import scene, tiny


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_checkpoint_loads_back_and_decodes_the_same(tmp_path, family):
    original = tiny(family)
    original.save(tmp_path)
    config = json.loads((tmp_path / "processor_config.json").read_text())
    assert not config["processor_class"].startswith("ImageOnly")  # an ordinary checkpoint
    loaded = load_lvlm(tmp_path, dtype="float32")
    assert loaded.family == original.family
    if not has_torchvision():
        assert type(loaded.processor).__name__ == config["processor_class"]
    decode = lambda lvlm: REDDecoder(lvlm, REDConfig(max_new_tokens=6)).decode(scene(), "what is it?", ["red"]).token_ids
    assert decode(loaded) == decode(original)


def test_unknown_model_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_lvlm(tmp_path / "no-such-model")


def test_hub_id_that_is_not_cached_fails_without_downloading():
    with pytest.raises(ModelLoadError, match="redgraph-test/definitely-not-cached"):
        load_lvlm("redgraph-test/definitely-not-cached", local_files_only=True)


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match=str(tmp_path)):
        load_lvlm(tmp_path)


def test_text_only_checkpoint_is_refused(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1)).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="not a supported vision-language checkpoint"):
        load_lvlm(tmp_path)


def test_remote_code_needs_consent(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "redgraph-custom",
        "auto_map": {"AutoConfig": "custom.CustomConfig", "AutoModelForImageTextToText": "custom.CustomModel"},
    }))
    with pytest.raises(ModelLoadError, match="trust_remote_code=True"):
        load_lvlm(tmp_path)


def test_processor_without_multimodal_parts_is_refused(tmp_path):
    lvlm = tiny("llava_clip")
    lvlm.model.save_pretrained(tmp_path)
    lvlm.processor.tokenizer.save_pretrained(tmp_path)  # no processor or image processor files
    with pytest.raises(ModelLoadError, match="processor"):
        load_lvlm(tmp_path)


@pytest.mark.parametrize(("kwargs", "message"), [({"dtype": "float8"}, "float8"), ({"device": "gpu:zero"}, "gpu:zero")])
def test_bad_dtype_or_device(tmp_path, kwargs, message):
    tiny("llava_clip").save(tmp_path)
    with pytest.raises(ConfigError, match=message):
        load_lvlm(tmp_path, **kwargs)


def test_image_only_processor_refuses_video_parts():
    processor = tiny("smolvlm").processor
    conversation = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "what happens?"}]}]
    if not has_torchvision():
        with pytest.raises(UnsupportedError, match="install torchvision"):
            processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)


def test_unknown_tiny_family():
    with pytest.raises(ConfigError, match="'nope'"):
        build_tiny_lvlm("nope")


@pytest.mark.parametrize("family", ["qwen2_vl", "smolvlm"])
def test_any_save_pretrained_of_the_processor_writes_a_checkpoint_that_loads(tmp_path, family):
    """Issue 38: save_pretrained (not only LVLM.save) once wrote "ImageOnlyQwen2VLProcessor"."""
    original = tiny(family)
    original.model.save_pretrained(tmp_path)
    original.processor.save_pretrained(tmp_path)
    for name in ("processor_config.json", "tokenizer_config.json"):
        written = json.loads((tmp_path / name).read_text()).get("processor_class")
        assert written is None or not written.startswith("ImageOnly"), (name, written)
    loaded = load_lvlm(tmp_path, dtype="float32")
    decode = lambda lvlm: REDDecoder(lvlm, REDConfig(max_new_tokens=4)).decode(scene(), "what is it?", []).token_ids
    assert decode(loaded) == decode(original)


def test_a_folder_saved_with_the_old_image_only_name_still_loads(tmp_path):
    original = tiny("qwen2_vl")
    original.save(tmp_path)
    config = json.loads((tmp_path / "processor_config.json").read_text())
    config["processor_class"] = "ImageOnly" + config["processor_class"]
    (tmp_path / "processor_config.json").write_text(json.dumps(config))
    assert load_lvlm(tmp_path, dtype="float32").family == "qwen2_vl"
