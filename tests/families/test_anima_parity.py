"""Anima from ComfyUI's split files (Cosmos-Predict2's DiT in its original keys with the LLM
adapter, a Qwen3 text encoder under CLIPLoader type stable_diffusion, the Qwen-Image VAE)
through Easel's nodes gives diffusers' Anima modular pipeline image (CPU fp32, tiny random
weights, max abs pixel diff 1e-3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.workflows import SIZE, as_tensor, image_of
from tests.fixtures import anima_family

anima_models = anima_family.anima_models
anima_manager = anima_family.anima_manager
run_anima = anima_family.run_anima

TOLERANCE = 1e-3
PROMPT = "a red circle on a blue square"
NEGATIVE = "blurry, low quality"


def split_workflow(*, steps: int = 3, cfg: float = 4.0, negative: str = NEGATIVE) -> dict[str, Any]:
    """ComfyUI's Anima template shape: UNETLoader, CLIPLoader type stable_diffusion,
    VAELoader, CLIPTextEncode (both sides), EmptyLatentImage, KSampler, VAEDecode."""
    return {
        "unet": {
            "type": "DiffusionModelLoader",
            "inputs": {"name": "anima-tiny.safetensors", "weight_dtype": "default"},
        },
        "clip": {
            "type": "TextEncoderLoader",
            "inputs": {"name": "qwen_3_06b_base.safetensors", "type": "stable_diffusion"},
        },
        "vae": {"type": "VAELoader", "inputs": {"name": "qwen_image_vae.safetensors"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": PROMPT}},
        "neg": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": negative}},
        "lat": {"type": "EmptyLatent", "inputs": {"width": SIZE, "height": SIZE}},
        "k": {
            "type": "KSampler",
            "inputs": {
                "model": ["unet", "model"],
                "positive": ["pos", "conditioning"],
                "negative": ["neg", "conditioning"],
                "latent": ["lat", "latent"],
                "seed": 42,
                "steps": steps,
                "cfg": cfg,
                "sampler_name": "euler",
                "scheduler": "simple",
            },
        },
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["vae", "vae"], "latent": ["k", "latent"]}},
    }


def reference(built: Any, *, guidance_scale: float = 4.0, **kwargs: Any) -> Any:
    pipe = anima_family.pipeline(built, guidance_scale)
    with torch.no_grad():
        state = pipe(
            height=SIZE,
            width=SIZE,
            num_inference_steps=3,
            generator=torch.Generator("cpu").manual_seed(42),
            output_type="np",
            **kwargs,
        )
    return as_tensor(state.values["images"])


def test_anima_split_files_equal_the_anima_pipeline(anima_models: Any, run_anima: Any) -> None:
    ours = image_of(run_anima(split_workflow(), ["dec"]))
    theirs = reference(anima_models, prompt=PROMPT, negative_prompt=NEGATIVE)
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


@pytest.mark.slow
def test_the_prompt_reaches_the_model(anima_models: Any, run_anima: Any) -> None:
    nodes = split_workflow(cfg=1.0)
    nodes["pos"]["inputs"]["text"] = "a green triangle"
    ours = image_of(run_anima(nodes, ["dec"]))
    theirs = reference(anima_models, guidance_scale=1.0, prompt="a green triangle")
    first = image_of(run_anima(split_workflow(cfg=1.0), ["dec"]))
    error = (ours - theirs).abs().max().item()
    assert error <= TOLERANCE
    assert (ours - first).abs().max().item() > max(100 * error, 1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("prefix", ["net.", "model.diffusion_model.", ""])
def test_either_key_layout_builds_the_pipeline_modules(
    anima_models: Any, prefix: str, tmp_path: Path
) -> None:
    from easel.models.anima_loading import build_transformer, conditioner_of

    transformer, conditioner = anima_models.transformer, anima_models.conditioner
    diffusers_keys = {"transformer." + k: v for k, v in transformer.state_dict().items()}
    diffusers_keys.update(
        {"transformer.text_conditioner." + k: v for k, v in conditioner.state_dict().items()}
    )
    for state in (
        anima_family.transformer_file(transformer, conditioner, prefix),
        diffusers_keys if not prefix else {},
    ):
        if not state:
            continue
        built = build_transformer(state, torch.float32, tmp_path / "x.safetensors")
        for module, expected in ((built, transformer), (conditioner_of(built), conditioner)):
            got = {
                k: v
                for k, v in module.state_dict().items()
                if not k.startswith("text_conditioner.")
            }
            assert set(got) == set(expected.state_dict())
            for key, value in expected.state_dict().items():
                assert torch.equal(got[key], value), key


@pytest.mark.slow
def test_a_plain_cosmos_file_is_not_anima(anima_models: Any) -> None:
    from easel.models import family_files
    from easel.models.families import anima

    path = anima_models.root / "models" / anima_family.FILES["transformer"]
    keys = family_files.header(path)
    assert keys is not None
    assert anima.recognise(keys) is not None
    cosmos = {k: v for k, v in keys.items() if ".llm_adapter." not in k}
    assert anima.recognise(cosmos) is None
    for module_name in family_files.DIFFUSION_MODELS:  # no other family claims Anima's file
        if module_name == "easel.models.anima_loading":
            continue
        module = family_files._module(module_name)
        assert not module.recognise_diffusion_model(keys), module_name


@pytest.mark.slow
def test_a_vae_file_is_not_a_text_encoder(run_anima: Any, anima_models: Any) -> None:
    import shutil

    models = anima_models.root / "models"
    target = models / "text_encoders" / "not_qwen.safetensors"
    shutil.copyfile(models / anima_family.FILES["vae"], target)
    nodes = split_workflow()
    nodes["clip"]["inputs"]["name"] = "not_qwen.safetensors"
    result = run_anima(nodes, ["pos"])
    target.unlink()
    assert result.status != "succeeded"
    assert "not_qwen.safetensors" in str(result.failures)


@pytest.mark.slow
def test_a_comfyui_lora_equals_the_pipeline_with_it_loaded(
    anima_models: Any, run_anima: Any
) -> None:
    """A LoRA in ComfyUI's layout (DiT and LLM-adapter layers) through LoraLoaderModelOnly gives
    the pipeline's image with diffusers' load_lora_weights of the same file."""
    nodes = split_workflow()
    nodes["lora"] = {
        "type": "LoraLoaderModelOnly",
        "inputs": {
            "model": ["unet", "model"],
            "name": Path(anima_family.FILES["lora"]).name,
            "strength_model": 1.0,
        },
    }
    nodes["k"]["inputs"]["model"] = ["lora", "model"]
    ours = image_of(run_anima(nodes, ["dec"]))
    plain = image_of(run_anima(split_workflow(), ["dec"]))
    pipe = anima_family.pipeline(anima_models, 4.0)
    path = anima_models.root / "models" / anima_family.FILES["lora"]
    pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name="tiny")
    try:
        with torch.no_grad():
            state = pipe(
                prompt=PROMPT,
                negative_prompt=NEGATIVE,
                height=SIZE,
                width=SIZE,
                num_inference_steps=3,
                generator=torch.Generator("cpu").manual_seed(42),
                output_type="np",
            )
    finally:
        pipe.unload_lora_weights()
    theirs = as_tensor(state.values["images"])
    error = (ours - theirs).abs().max().item()
    assert error <= TOLERANCE
    assert (ours - plain).abs().max().item() > max(100 * error, 1e-3)


@pytest.mark.slow
def test_prompt_weights_scale_the_adapters_t5_tokens(anima_models: Any, run_anima: Any) -> None:
    """ComfyUI's syntax as ComfyUI reads it for Anima: the Qwen3 sees the plain text, the
    weights multiply the LLM adapter's output at the weighted piece's T5 tokens."""
    from easel.models.anima_denoiser import AnimaNetwork
    from easel.models.families.anima import ANIMA

    nodes = split_workflow()
    nodes["pos"]["inputs"]["text"] = "a red circle on a (blue square:1.5)"
    nodes["neg"]["inputs"]["text"] = PROMPT
    result = run_anima(nodes, ["pos", "neg"])
    weighted = result.values["pos"]["conditioning"]
    plain = result.values["neg"]["conditioning"]
    assert torch.equal(weighted["embeds"], plain["embeds"])
    t5 = anima_models.t5_tokenizer
    weights = weighted["t5_weights"][0]
    ids = weighted["t5_ids"][0].tolist()
    square = t5("blue square", add_special_tokens=False)["input_ids"]
    assert ids[-1 - len(square) : -1] == square and ids[-1] == t5.eos_token_id
    assert weights.tolist() == [1.0] * (len(ids) - 1 - len(square)) + [1.5] * len(square) + [1.0]
    transformer = anima_models.transformer
    transformer.add_module("text_conditioner", anima_models.conditioner)
    try:
        network = AnimaNetwork(transformer, transformer, ANIMA)
        ours = network.condition(weighted, 1, "cpu", torch.float32, pixel_size=(SIZE, SIZE))
    finally:
        del transformer.text_conditioner
    with torch.no_grad():
        adapter = anima_models.conditioner(
            source_hidden_states=weighted["embeds"], target_input_ids=weighted["t5_ids"]
        )
    expected = adapter.clone()
    expected[:, : len(ids)] *= weights[None, :, None]
    assert ours.encoder_hidden_states.shape == (1, 512, anima_family.CONTEXT)
    assert torch.allclose(ours.encoder_hidden_states, expected, atol=1e-6)


@pytest.mark.slow
def test_a_diffusers_folder_gives_the_pipeline_image(
    anima_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Anima modular pipeline saved as diffusers saves it (modular_model_index.json,
    transformer/, text_conditioner/, text_encoder/, tokenizer/, t5_tokenizer/, vae/,
    scheduler/), with a model_index.json of the same components beside it (Easel's model
    discovery lists diffusers folders by that file), loads with CheckpointLoader and gives the
    pipeline's image."""
    import json

    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    folder = tmp_path / "anima"
    anima_family.pipeline(anima_models).save_pretrained(str(folder), overwrite_modular_index=True)
    modular = json.loads((folder / "modular_model_index.json").read_text())
    index = {k: v[:2] if isinstance(v, list) else v for k, v in modular.items()}
    (folder / "model_index.json").write_text(json.dumps(index))
    monkeypatch.setenv("EASEL_MODELS_DIR", str(tmp_path))
    manager = ModelManager([tmp_path], device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    split = split_workflow()
    nodes = {
        "ckpt": {"type": "CheckpointLoader", "inputs": {"name": "anima"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": PROMPT}},
        "neg": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": NEGATIVE}},
        "lat": split["lat"],
        "k": {"type": "KSampler", "inputs": {**split["k"]["inputs"], "model": ["ckpt", "model"]}},
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["ckpt", "vae"], "latent": ["k", "latent"]}},
    }
    workflow = {"format": "easel.workflow", "version": 1, "nodes": nodes}
    ours = image_of(executor.run(workflow, targets=["dec"], keep_values=True))
    theirs = reference(anima_models, prompt=PROMPT, negative_prompt=NEGATIVE)
    assert (ours - theirs).abs().max().item() <= TOLERANCE


@pytest.mark.slow
def test_a_comfyui_checkpoint_gives_the_pipeline_image(
    anima_models: Any, run_anima: Any, anima_manager: Any
) -> None:
    """A checkpoint as ComfyUI saves an Anima model (the diffusion model under
    `model.diffusion_model.`, the Qwen3 under `text_encoders.qwen3_06b.transformer.`, the VAE
    under `vae.`) loads with CheckpointLoader and gives the pipeline's image; the diffusion
    model alone in checkpoints/ is refused naming its loader."""
    from safetensors.torch import load_file, save_file

    models = anima_models.root / "models"
    (models / "checkpoints").mkdir(exist_ok=True)
    dit = anima_family.transformer_file(
        anima_models.transformer, anima_models.conditioner, "model.diffusion_model."
    )
    text = load_file(str(models / anima_family.FILES["text_encoder"]))
    vae = load_file(str(models / anima_family.FILES["vae"]))
    state = {**dit, **{"text_encoders.qwen3_06b.transformer." + k: v for k, v in text.items()}}
    state.update({"vae." + k: v for k, v in vae.items()})
    save_file(state, str(models / "checkpoints" / "anima-all.safetensors"))
    save_file(dit, str(models / "checkpoints" / "anima-dit-only.safetensors"))
    split = split_workflow()
    nodes = {
        "ckpt": {"type": "CheckpointLoader", "inputs": {"name": "anima-all.safetensors"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": PROMPT}},
        "neg": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": NEGATIVE}},
        "lat": split["lat"],
        "k": {"type": "KSampler", "inputs": {**split["k"]["inputs"], "model": ["ckpt", "model"]}},
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["ckpt", "vae"], "latent": ["k", "latent"]}},
    }
    ours = image_of(run_anima(nodes, ["dec"]))
    theirs = reference(anima_models, prompt=PROMPT, negative_prompt=NEGATIVE)
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    nodes["ckpt"]["inputs"]["name"] = "anima-dit-only.safetensors"
    result = run_anima(nodes, ["ckpt"])
    assert result.status != "succeeded"
    assert "DiffusionModelLoader" in str(result.failures)
