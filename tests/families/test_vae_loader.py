"""VAELoader: VAE files in the original and diffusers layouts decode a family's latents as the
checkpoint's own VAE does, with the latent's (the family's) scaling."""

from __future__ import annotations

from typing import Any

import torch

from tests.families.workflows import image_of, txt2img


def _write_vae_files(built: Any, vae_dir: Any) -> None:
    from safetensors.torch import load_file, save_file

    vae_dir.mkdir(parents=True, exist_ok=True)
    state = load_file(str(built.single_file))
    ldm = {
        k.removeprefix("first_stage_model."): v
        for k, v in state.items()
        if k.startswith("first_stage_model.")
    }
    save_file(ldm, str(vae_dir / "sdxl_vae_original.safetensors"))
    save_file(
        {k: v.contiguous() for k, v in built.pipe.vae.state_dict().items()},
        str(vae_dir / "sdxl_vae_diffusers.safetensors"),
    )


def test_vae_files_decode_like_the_checkpoint_vae(
    sd_models: Any, sd_root: Any, run_sd: Any
) -> None:
    built = sd_models("sdxl")
    _write_vae_files(built, sd_root / "models" / "vae")
    nodes = txt2img("sdxl.safetensors", steps=2)
    for name in ("sdxl_vae_original.safetensors", "sdxl_vae_diffusers.safetensors"):
        loader = f"vae_{name[9:12]}"
        nodes[loader] = {"type": "VAELoader", "inputs": {"name": name}}
        nodes[f"dec_{loader}"] = {
            "type": "VAEDecode",
            "inputs": {"vae": [loader, "vae"], "latent": ["k", "latent"]},
        }
    result = run_sd(nodes, ["dec", "dec_vae_ori", "dec_vae_dif"])
    own = image_of(result)
    for node in ("dec_vae_ori", "dec_vae_dif"):
        assert torch.allclose(image_of(result, node), own, atol=1e-5)


def test_unknown_vae_file_is_a_clear_error(sd_root: Any, run_sd: Any) -> None:
    from safetensors.torch import save_file

    (sd_root / "models" / "vae").mkdir(parents=True, exist_ok=True)
    save_file(
        {"lora_unet_x.lora_down.weight": torch.zeros(2, 2)},
        str(sd_root / "models" / "vae" / "not_a_vae.safetensors"),
    )
    nodes = {"v": {"type": "VAELoader", "inputs": {"name": "not_a_vae.safetensors"}}}
    result = run_sd(nodes, ["v"])
    assert result.status == "failed"
    message = str(result.failures)
    assert "not_a_vae.safetensors is not a VAE Easel knows" in message
