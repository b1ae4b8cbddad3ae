"""Z-Image and Lumina 2 files are told apart from their keys (a safetensors header is enough),
configs are read off the shapes, CLIPLoader type lumina2 takes a Qwen3 or a Gemma 2 file, the
tokenizers are found locally or the error names where Easel looked, and ComfyUI's nodes for
these families convert (ModelSamplingAuraFlow's `sampling` widget included)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.fixtures import lumina_family

# Variants of the family's behaviour (samplers, layouts, edge cases): run with --slow.
pytestmark = pytest.mark.slow

lumina_root = lumina_family.lumina_root
lumina_models = lumina_family.lumina_models
lumina_manager = lumina_family.lumina_manager
run_lumina = lumina_family.run_lumina


def test_families_are_recognised_from_the_header(lumina_models: Any) -> None:
    from easel.models.families import lumina
    from easel.models.family_files import header
    from easel.models.lumina_loading import text_encoder_kind

    zimage, lumina2 = lumina_models["z-image"], lumina_models["lumina2"]
    z_keys = header(zimage.transformer_file)
    l_keys = header(lumina2.transformer_file)
    assert z_keys is not None and l_keys is not None
    assert lumina.recognise(z_keys)[0] is lumina.ZIMAGE  # type: ignore[index]
    assert lumina.recognise(l_keys)[0] is lumina.LUMINA2  # type: ignore[index]
    assert text_encoder_kind(header(zimage.text_encoder_file) or {}) == ("qwen3", "model.")
    assert text_encoder_kind(header(lumina2.text_encoder_file) or {}) == ("gemma2", "model.")


def test_configs_read_off_the_shapes_are_the_models(lumina_models: Any) -> None:
    from easel.models.families import lumina
    from easel.models.family_files import header

    z_config = lumina.zimage_config(header(lumina_models["z-image"].transformer_file) or {})
    l_config = lumina.lumina2_config(header(lumina_models["lumina2"].transformer_file) or {})

    def norm(value: Any) -> Any:
        return list(value) if isinstance(value, tuple | list) else value

    pairs = ((z_config, lumina_models["z-image"]), (l_config, lumina_models["lumina2"]))
    for config, built in pairs:
        own = dict(built.pipe.transformer.config)
        if own.get("out_channels", 0) is None:  # None: as many as in_channels
            own["out_channels"] = own["in_channels"]
        assert set(config) <= set(own)
        assert {k: norm(own[k]) for k in config} == {k: norm(v) for k, v in config.items()}


def test_lumina2_config_takes_any_feed_forward_width() -> None:
    """A width Lumina 2's (256, None) rounding does not give gets a multiplier giving it."""
    from diffusers import Lumina2Transformer2DModel

    from easel.models.families import lumina
    from tests.fixtures.lumina_family import lumina2_original

    model = Lumina2Transformer2DModel(
        hidden_size=96,
        num_layers=1,
        num_refiner_layers=1,
        num_attention_heads=1,
        num_kv_heads=1,
        cap_feat_dim=16,
        multiple_of=1,
        ffn_dim_multiplier=0.7,
    )
    config = lumina.lumina2_config(lumina2_original(model))
    rebuilt = Lumina2Transformer2DModel(**config)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == shapes


def test_a_file_of_neither_family_is_refused(tmp_path: Path, lumina_manager: Any) -> None:
    from safetensors.torch import save_file

    from easel.models.errors import ModelError
    from easel.models.lumina_loading import lumina2_clip

    path = tmp_path / "clip_l.safetensors"
    save_file({"text_model.embeddings.token_embedding.weight": torch.zeros(4, 4)}, str(path))
    with pytest.raises(ModelError, match=r"Qwen3 .*Gemma 2"):
        lumina2_clip("x", [path], lumina_manager)


def test_missing_tokenizers_name_where_easel_looked(
    lumina_models: Any, lumina_root: Path, tmp_path: Path
) -> None:
    from easel.models.errors import ModelError
    from easel.models.lumina_tokenizers import tokenizer

    environ = {"HF_HUB_CACHE": str(tmp_path / "hub")}
    with pytest.raises(ModelError) as caught:
        tokenizer(
            "gemma2", checkpoint="gemma_2_2b_fp16.safetensors", roots=[tmp_path], environ=environ
        )
    message = str(caught.value)
    assert "gemma_2_2b_fp16.safetensors holds no tokenizer" in message
    assert "EASEL_GEMMA_TOKENIZER" in message and str(tmp_path / "hub") in message
    found = tokenizer("qwen3", roots=[lumina_root / "ComfyUI"], environ=environ)
    assert found("<|im_start|>").input_ids == [found.convert_tokens_to_ids("<|im_start|>")]
    configured = {**environ, "EASEL_GEMMA_TOKENIZER": str(lumina_root / "tokenizers" / "gemma")}
    assert tokenizer("gemma2", roots=[tmp_path], environ=configured).bos_token == "<bos>"


def test_zimage_prompt_is_the_chat_template(lumina_models: Any, lumina_manager: Any) -> None:
    """The tokens Easel encodes are the pipeline's chat template applied to the prompt, taken
    literally as ComfyUI's Z-Image tokenizer takes it (no weight syntax)."""
    from easel.models.lumina_loading import lumina2_clip
    from easel.models.lumina_text import token_ids

    clip = lumina2_clip("z", [lumina_models["z-image"].text_encoder_file], lumina_manager)
    tokenizer = lumina_models["z-image"].pipe.tokenizer
    prompt = "a (red:1.2) circle"
    templated = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=True,
    )
    warnings: list[str] = []
    assert token_ids(clip.parts[0], prompt, warnings) == tokenizer(templated).input_ids
    assert warnings == []


def test_lumina2_weights_are_read_and_not_applied(
    lumina_models: Any, run_lumina: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Lumina 2 reads ComfyUI's prompt syntax (the weighted word without its brackets) and
    says the weight is not applied: the image is the plain prompt's."""
    from tests.families.test_lumina2_parity import split_workflow
    from tests.families.workflows import image_of

    plain = split_workflow(cfg=1.0)
    plain["pos"]["inputs"]["user_prompt"] = "a red circle"
    weighted = split_workflow(cfg=1.0)
    weighted["pos"]["inputs"]["user_prompt"] = "a (red:1.3) circle"
    result = run_lumina(weighted, ["dec"])
    assert any("weights are not applied" in record.getMessage() for record in caplog.records)
    images = [image_of(run_lumina(plain, ["dec"])), image_of(result)]
    assert torch.equal(images[0], images[1])


def _convert(nodes: dict[str, Any]) -> Any:
    from easel.comfy.convert import to_easel

    return to_easel(nodes)


def test_comfy_nodes_convert() -> None:
    """CLIPLoader type lumina2, CLIPTextEncodeLumina2 and ModelSamplingAuraFlow with the
    `sampling` widget of newer ComfyUI ("flow") convert."""
    prompt = {
        "1": {
            "class_type": "CLIPLoader",
            "inputs": {"clip_name": "g.safetensors", "type": "lumina2"},
        },
        "2": {
            "class_type": "CLIPTextEncodeLumina2",
            "inputs": {"clip": ["1", 0], "system_prompt": "alignment", "user_prompt": "a cat"},
        },
        "3": {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": "l.safetensors", "weight_dtype": "default"},
        },
        "4": {
            "class_type": "ModelSamplingAuraFlow",
            "inputs": {"model": ["3", 0], "shift": 6.0, "sampling": "flow"},
        },
    }
    nodes = _convert(prompt)["nodes"]
    assert nodes["1"]["type"] == "TextEncoderLoader" and nodes["1"]["inputs"]["type"] == "lumina2"
    assert nodes["2"]["type"] == "TextEncodeLumina2"
    assert nodes["2"]["inputs"]["system_prompt"] == "alignment"
    assert nodes["4"]["inputs"] == {"model": ["3", "model"], "shift": 6.0}


def test_other_aura_flow_sampling_is_refused_naming_it() -> None:
    """A sampling kind Easel lacks (ComfyUI's IMG_TO_IMG_FLOW, not one of the node's choices
    today) is refused naming it; "img_to_img_velocity" converts (tests/families/
    test_marigold_sampling.py)."""
    from easel.core.graph import WorkflowError

    prompt = {
        "3": {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": "l.safetensors", "weight_dtype": "default"},
        },
        "4": {
            "class_type": "ModelSamplingAuraFlow",
            "inputs": {"model": ["3", 0], "shift": 1.73, "sampling": "img_to_img_flow"},
        },
    }
    with pytest.raises(WorkflowError) as caught:
        _convert(prompt)
    [problem] = caught.value.problems
    assert (problem.node, problem.input) == ("4", "sampling")
    assert "img_to_img_flow" in problem.message


def test_integer_quantised_files_are_refused_by_name(
    lumina_models: Any, lumina_manager: Any, tmp_path: Path
) -> None:
    """ComfyUI's int8 files are refused naming a quantised tensor, not read as floats."""
    from safetensors.torch import load_file, save_file

    from easel.models.errors import ModelError
    from easel.models.lumina_loading import diffusion_model

    state = load_file(str(lumina_models["z-image"].transformer_file))
    key = "layers.0.attention.qkv.weight"
    state[key] = state[key].to(torch.int8)
    state[key.replace(".weight", ".weight_scale")] = torch.tensor(0.01)
    path = tmp_path / "z_image_turbo_int8_convrot.safetensors"
    save_file(state, str(path))
    with pytest.raises(ModelError, match=r"integer-quantised weights \(e\.g\. layers\.0\."):
        diffusion_model("z", path, lumina_manager)
