"""Pointing Easel at what users have: ComfyUI and A1111 installs, extra_model_paths.yaml, config."""

from __future__ import annotations

from pathlib import Path

import pytest

from easel.models import discovery, model_paths
from easel.models.errors import ModelError
from easel.models.model_paths import KindFolder


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def a1111_install(root: Path) -> Path:
    for rel in (
        "models/Stable-diffusion/sd15.safetensors",
        "models/Lora/ink.safetensors",
        "models/LyCORIS/loha.safetensors",
        "models/VAE/vae.pt",
        "embeddings/bad-hands.pt",
        "models/ControlNet/canny.pth",
        "models/ESRGAN/4x.pth",
        "models/RealESRGAN/x2.pth",
        "webui.py",
    ):
        touch(root / rel)
    return root


# The a111 section as in ComfyUI's extra_model_paths.yaml.example (indented `|` blocks).
A111_YAML = """\
a111:
    base_path: {base}

    checkpoints: models/Stable-diffusion
    configs: models/Stable-diffusion
    vae: models/VAE
    loras: |
         models/Lora
         models/LyCORIS
    upscale_models: |
                  models/ESRGAN
                  models/RealESRGAN
                  models/SwinIR
    embeddings: embeddings
    hypernetworks: models/hypernetworks
    controlnet: models/ControlNet
"""


def test_extra_model_paths_yaml_a111_section(tmp_path: Path) -> None:
    webui = a1111_install(tmp_path / "stable-diffusion-webui")
    yaml_file = tmp_path / "extra_model_paths.yaml"
    yaml_file.write_text(A111_YAML.format(base=webui))
    folders = model_paths.read_extra_model_paths(yaml_file)
    assert KindFolder("loras", webui / "models" / "LyCORIS") in folders
    assert KindFolder("upscale_models", webui / "models" / "SwinIR") in folders
    assert {f.kind for f in folders} == {
        "checkpoints",
        "vae",
        "loras",
        "upscale_models",
        "embeddings",
        "controlnet",
    }  # configs etc. skipped
    roots = [yaml_file]
    assert discovery.kind_names("checkpoints", roots) == ["sd15.safetensors"]
    assert discovery.kind_names("loras", roots) == ["ink.safetensors", "loha.safetensors"]
    assert discovery.kind_names("upscale_models", roots) == ["4x.pth", "x2.pth"]
    assert discovery.kind_names("embeddings", roots) == ["bad-hands.pt"]
    assert discovery.resolve("vae", "vae.pt", roots) == webui / "models" / "VAE" / "vae.pt"


def test_yaml_relative_paths_env_vars_legacy_kinds_and_is_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    touch(shared / "clip" / "clip_l.safetensors")
    touch(tmp_path / "mine" / "text" / "t5.safetensors")
    touch(tmp_path / "mine" / "unets" / "flux.gguf")
    monkeypatch.setenv("SHARED_MODELS", str(shared))
    yaml_file = tmp_path / "paths.yaml"
    yaml_file.write_text(
        "later:\n"
        "    base_path: $SHARED_MODELS\n"
        "    clip: clip/\n"
        "first:\n"
        "    base_path: mine\n"
        "    is_default: true\n"
        "    text_encoders: text\n"
        "    unet: unets\n"
        "    custom_nodes: nodes\n"
        "empty:\n"
    )
    folders = model_paths.read_extra_model_paths(yaml_file)
    assert folders == [
        KindFolder("text_encoders", tmp_path / "mine" / "text"),
        KindFolder("diffusion_models", tmp_path / "mine" / "unets"),
        KindFolder("text_encoders", shared / "clip"),
    ]
    assert discovery.kind_names("text_encoders", [yaml_file]) == [
        "clip_l.safetensors",
        "t5.safetensors",
    ]
    assert discovery.kind_names("diffusion_models", [yaml_file]) == ["flux.gguf"]


def test_a_yaml_that_is_not_the_format_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ModelError, match=r"bad.yaml is not in extra_model_paths.yaml format"):
        discovery.kind_names("checkpoints", [bad])
    broken = tmp_path / "broken.yaml"
    broken.write_text("a111:\n  base_path: [unclosed\n")
    with pytest.raises(ModelError, match=r"cannot read the model paths file .*broken.yaml"):
        discovery.kind_names("checkpoints", [broken])


def test_a_comfyui_root_means_its_models_folder_and_its_yaml(tmp_path: Path) -> None:
    comfy = tmp_path / "ComfyUI"
    (comfy / "comfy").mkdir(parents=True)
    touch(comfy / "main.py")
    touch(comfy / "models" / "checkpoints" / "sd15.safetensors")
    webui = a1111_install(tmp_path / "webui")
    (comfy / "extra_model_paths.yaml").write_text(A111_YAML.format(base=webui))
    assert discovery.kind_names("checkpoints", [comfy]) == ["sd15.safetensors"]
    assert (
        discovery.resolve("checkpoints", "sd15.safetensors", [comfy])
        == comfy / "models" / "checkpoints" / "sd15.safetensors"
    )  # ComfyUI's own folder first
    assert discovery.kind_names("loras", [comfy]) == ["ink.safetensors", "loha.safetensors"]
    assert model_paths.comfyui_installs([comfy]) == [comfy]
    assert model_paths.comfyui_installs([comfy / "models"]) == [comfy]


def test_an_a1111_install_is_read_with_its_own_layout(tmp_path: Path) -> None:
    webui = a1111_install(tmp_path / "webui")
    assert discovery.kind_names("checkpoints", [webui]) == ["sd15.safetensors"]
    assert discovery.kind_names("loras", [webui]) == ["ink.safetensors", "loha.safetensors"]
    assert discovery.kind_names("controlnet", [webui]) == ["canny.pth"]


def test_config_file_adds_roots_after_the_environment(tmp_path: Path) -> None:
    env_root = tmp_path / "env"
    touch(env_root / "loras" / "a.safetensors")
    conf_root = tmp_path / "conf"
    touch(conf_root / "loras" / "b.safetensors")
    config = tmp_path / "easel" / "config.toml"
    config.parent.mkdir()
    config.write_text('[models]\npaths = ["../conf"]\n\n[tokenizers]\nclip = "/opt/clip"\n')
    environ = {"EASEL_MODELS_DIR": str(env_root), "EASEL_CONFIG": str(config)}
    roots = discovery.model_roots(environ)
    assert roots[:2] == [env_root, tmp_path / "easel" / ".." / "conf"]
    assert roots[-1] == discovery.BUNDLED_DIR
    assert discovery.kind_names("loras", roots) == ["a.safetensors", "b.safetensors"]
    assert model_paths.configured_tokenizer("clip", environ) == Path("/opt/clip")
    assert model_paths.configured_tokenizer("t5", environ) is None
    assert model_paths.configured_tokenizer("t5", environ | {"EASEL_T5_TOKENIZER": "/t5"}) == Path(
        "/t5"
    )


def test_a_broken_config_file_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[models\n")
    with pytest.raises(ModelError, match=r"cannot read the Easel config file .*config.toml"):
        discovery.model_roots({"EASEL_CONFIG": str(config)})


def test_without_a_config_file_the_roots_are_as_before(tmp_path: Path) -> None:
    roots = discovery.model_roots({"EASEL_CONFIG": str(tmp_path / "none.toml")})
    assert roots[-1] == discovery.BUNDLED_DIR and len(roots) == 2
