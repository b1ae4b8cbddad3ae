"""The models folder by kind, as ComfyUI users have it: names, resolution, errors, caching."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from easel.models import discovery
from easel.models.errors import ModelError
from easel.models.manager import ModelManager


def touch(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def comfy_models(root: Path) -> Path:
    """A ComfyUI models folder with empty placeholder files (listing never opens them)."""
    for rel in (
        "checkpoints/v1-5-pruned-emaonly.safetensors",
        "checkpoints/sdxl/juggernaut.safetensors",
        "checkpoints/old/model.ckpt",
        "checkpoints/put_checkpoints_here",
        "loras/style/ink.safetensors",
        "loras/detail.sft",
        "vae/sdxl_vae.safetensors",
        "embeddings/easynegative.pt",
        "controlnet/canny.pth",
        "upscale_models/4x-ultrasharp.pth",
        "unet/flux.gguf",
        "diffusion_models/sd3.safetensors",
        "clip/clip_l.safetensors",
        "text_encoders/t5xxl.safetensors",
        "clip_vision/vit-h.safetensors",
        "vae_approx/taesd_decoder.pth",
        "configs/v1-inference.yaml",
        "checkpoints/notes.txt",
        "loras/.hidden.safetensors",
    ):
        touch(root / rel)
    pipe = root / "checkpoints" / "sd15-diffusers"
    touch(pipe / "model_index.json", b"{}")
    touch(pipe / "unet" / "config.json", b"{}")
    touch(pipe / "unet" / "diffusion_pytorch_model.safetensors")
    touch(root / "controlnet" / "depth-diffusers" / "config.json", b"{}")
    touch(root / "controlnet" / "depth-diffusers" / "diffusion_pytorch_model.safetensors")
    return root


def test_each_kind_lists_only_its_own_folder_with_comfyui_names(tmp_path: Path) -> None:
    roots = [comfy_models(tmp_path / "models")]
    assert discovery.kind_names("checkpoints", roots) == [
        "old/model.ckpt",
        "sd15-diffusers",
        "sdxl/juggernaut.safetensors",
        "v1-5-pruned-emaonly.safetensors",
    ]
    assert discovery.kind_names("loras", roots) == ["detail.sft", "style/ink.safetensors"]
    assert discovery.kind_names("vae", roots) == ["sdxl_vae.safetensors"]
    assert discovery.kind_names("embeddings", roots) == ["easynegative.pt"]
    assert discovery.kind_names("controlnet", roots) == ["canny.pth", "depth-diffusers"]
    assert discovery.kind_names("upscale_models", roots) == ["4x-ultrasharp.pth"]
    assert discovery.kind_names("diffusion_models", roots) == ["flux.gguf", "sd3.safetensors"]
    assert discovery.kind_names("unet", roots) == ["flux.gguf", "sd3.safetensors"]
    assert discovery.kind_names("text_encoders", roots) == [
        "clip_l.safetensors",
        "t5xxl.safetensors",
    ]
    assert discovery.kind_names("clip", roots) == discovery.kind_names("text_encoders", roots)
    assert discovery.kind_names("clip_vision", roots) == ["vit-h.safetensors"]


def test_resolve_gives_the_path_and_accepts_windows_slashes(tmp_path: Path) -> None:
    root = comfy_models(tmp_path / "models")
    path = discovery.resolve("checkpoints", "sdxl/juggernaut.safetensors", [root])
    assert path == root / "checkpoints" / "sdxl" / "juggernaut.safetensors"
    assert discovery.resolve("checkpoints", "sdxl\\juggernaut.safetensors", [root]) == path
    assert (
        discovery.resolve("clip", "clip_l.safetensors", [root])
        == root / "clip" / "clip_l.safetensors"
    )
    assert (
        discovery.resolve("checkpoints", "sd15-diffusers", [root])
        == root / "checkpoints" / "sd15-diffusers"
    )


def test_unknown_name_error_names_kind_name_folders_and_close_matches(tmp_path: Path) -> None:
    root = comfy_models(tmp_path / "models")
    with pytest.raises(ModelError) as caught:
        discovery.resolve("checkpoints", "juggernaut.safetensors", [root])
    message = str(caught.value)
    assert "checkpoints" in message and "'juggernaut.safetensors'" in message
    assert str(root / "checkpoints") in message and str(root / "diffusers") in message
    assert "Close matches: sdxl/juggernaut.safetensors" in message


def test_a_file_in_the_wrong_kind_folder_is_pointed_out(tmp_path: Path) -> None:
    root = comfy_models(tmp_path / "models")
    with pytest.raises(ModelError, match=r"another kind: loras/detail.sft"):
        discovery.resolve("checkpoints", "detail.sft", [root])


def test_unknown_kind_is_a_model_error_listing_the_kinds(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"unknown model kind 'hypernets'.*checkpoints, loras"):
        discovery.kind_names("hypernets", [tmp_path])


def test_earlier_root_hides_the_same_name_in_a_later_one(tmp_path: Path) -> None:
    first = touch(tmp_path / "a" / "loras" / "x.safetensors").parent.parent
    second = touch(tmp_path / "b" / "loras" / "x.safetensors").parent.parent
    touch(second / "loras" / "y.safetensors")
    assert discovery.kind_names("loras", [first, second]) == ["x.safetensors", "y.safetensors"]
    assert (
        discovery.resolve("loras", "x.safetensors", [first, second])
        == first / "loras" / "x.safetensors"
    )


def old_style_root(root: Path) -> Path:
    """The layout of the tiny test models (tests/fixtures/tiny_models.py), as placeholders."""
    bundle = root / "tiny-shapes"
    touch(bundle / "model_index.json", b"{}")
    for part in ("unet", "vae", "text_encoder", "clip", "prior", "decoder", "upscaler"):
        touch(bundle / part / "config.json", b"{}")
    touch(root / "tiny-single.safetensors")
    touch(root / "tiny-single.config" / "unet" / "config.json", b"{}")
    touch(root / "unsafe.ckpt")
    return root


def test_old_style_root_keeps_its_names_and_old_names_still_resolve(tmp_path: Path) -> None:
    roots = [old_style_root(tmp_path / "old")]
    bundle = roots[0] / "tiny-shapes"
    assert discovery.kind_names("checkpoints", roots) == [
        "tiny-shapes",
        "tiny-shapes/decoder",
        "tiny-single.safetensors",
        "unsafe.ckpt",
    ]
    assert discovery.kind_names("loras", roots) == []
    assert (
        discovery.resolve("checkpoints", "tiny-single", roots)
        == roots[0] / "tiny-single.safetensors"
    )
    assert discovery.resolve("checkpoints", "tiny-shapes/decoder", roots) == bundle / "decoder"
    assert discovery.find("checkpoints", "tiny-shapes/decoder", roots).path == bundle
    assert discovery.find("checkpoints", "tiny-shapes", roots).parts == (
        "clip",
        "prior",
        "decoder",
        "upscaler",
    )
    assert discovery.checkpoint_names(roots=roots) == [
        "tiny-shapes",
        "tiny-shapes/decoder",
        "tiny-single",
        "unsafe",
    ]
    assert discovery.names_with_part("prior", roots=roots) == ["tiny-shapes"]


def test_loose_checkpoints_beside_kind_folders_still_count(tmp_path: Path) -> None:
    root = comfy_models(tmp_path / "models")
    touch(root / "loose.safetensors")
    assert "loose.safetensors" in discovery.kind_names("checkpoints", [root])
    # kind folders and ComfyUI's other folders are never read as checkpoints
    assert not any(
        n.startswith(("loras", "vae_approx", "ink"))
        for n in discovery.kind_names("checkpoints", [root])
    )
    assert discovery.checkpoint_names(roots=[root]) == [
        "loose",
        "old/model",
        "sd15-diffusers",
        "sdxl/juggernaut",
        "v1-5-pruned-emaonly",
    ]


def test_bundled_demo_weights_stay_a_checkpoint() -> None:
    names = discovery.kind_names("checkpoints", [discovery.BUNDLED_DIR])
    assert "easel-shapes" in names


def test_manager_names_and_resolve_wrap_the_roots(tmp_path: Path) -> None:
    root = comfy_models(tmp_path / "models")
    manager = ModelManager([root], device="cpu")
    assert manager.names("vae") == ["sdxl_vae.safetensors"]
    assert manager.resolve("vae", "sdxl_vae.safetensors") == root / "vae" / "sdxl_vae.safetensors"
    with pytest.raises(ModelError, match="no vae model named 'nope'"):
        manager.resolve("vae", "nope")


def test_listing_is_cached_until_a_directory_changes(tmp_path: Path) -> None:
    root = comfy_models(tmp_path / "models")
    discovery.clear_cache()
    assert discovery.kind_names("loras", [root]) == ["detail.sft", "style/ink.safetensors"]
    touch(root / "loras" / "style" / "new.safetensors")
    folder = root / "loras" / "style"
    stamp = time.time_ns() + 5_000_000_000  # some filesystems keep coarse mtimes
    os.utime(folder, ns=(stamp, stamp))
    assert discovery.kind_names("loras", [root]) == [
        "detail.sft",
        "style/ink.safetensors",
        "style/new.safetensors",
    ]


def test_listing_never_opens_model_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = comfy_models(tmp_path / "models")
    discovery.clear_cache()
    opened: list[str] = []
    real_open = open

    def spy(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    for kind in discovery.KINDS:
        discovery.kind_names(kind, [root])
    assert opened == []


def test_model_folder_contents_are_not_listed_separately(tmp_path: Path) -> None:
    root = comfy_models(tmp_path / "models")
    names = discovery.kind_names("checkpoints", [root])
    assert "sd15-diffusers" in names
    assert not any("diffusion_pytorch_model" in n or "unet" in n for n in names)


def test_unknown_name_error_lists_a_few_available_names(tmp_path: Path) -> None:
    root = tmp_path / "models"
    for i in range(15):
        touch(root / "loras" / f"lora-{i:02d}.safetensors")
    with pytest.raises(ModelError) as caught:
        discovery.resolve("loras", "nope.safetensors", [root])
    message = str(caught.value)
    shown = ", ".join(f"lora-{i:02d}.safetensors" for i in range(12))
    assert f"no loras model named 'nope.safetensors'; available: {shown} and 3 more" in message


def test_a_kind_folder_created_after_a_listing_is_seen(tmp_path: Path) -> None:
    root = comfy_models(tmp_path / "models")
    assert discovery.kind_names("controlnet", [root]) == ["canny.pth", "depth-diffusers"]
    (root / "t2i_adapter").mkdir()  # did not exist at the first listing
    touch(root / "t2i_adapter" / "sketch.safetensors")
    assert discovery.kind_names("controlnet", [root]) == [
        "canny.pth",
        "depth-diffusers",
        "sketch.safetensors",
    ]
