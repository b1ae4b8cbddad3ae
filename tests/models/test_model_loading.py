"""Discovery, loading once, single files, pickle refusal and the manager's report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from easel.models import discovery
from easel.models.errors import ModelError, UnsafePickleError
from easel.models.manager import ModelManager
from tests.fixtures.tiny_models import TinyModels


def test_discovery_lists_folders_single_files_and_bundle_parts(tiny_models: TinyModels) -> None:
    entries = discovery.discover(roots=[tiny_models.root])
    assert entries["tiny-shapes"].format == "diffusers"
    assert set(entries["tiny-shapes"].parts) == {"clip", "prior", "decoder", "upscaler"}
    assert entries["tiny-single"].format == "single_file"
    assert entries["unsafe"].is_pickle
    assert "tiny-single.config" not in entries  # a config folder is not a model
    names = discovery.checkpoint_names(roots=[tiny_models.root])
    assert names == ["tiny-shapes", "tiny-shapes/decoder", "tiny-single", "unsafe"]
    assert discovery.names_with_part("prior", roots=[tiny_models.root]) == ["tiny-shapes"]


def test_roots_follow_the_environment(tmp_path: Path) -> None:
    roots = discovery.model_roots({"EASEL_MODELS_DIR": str(tmp_path)})
    assert roots[0] == tmp_path
    assert roots[-1] == discovery.BUNDLED_DIR
    assert any(r.name == "models" and "easel" in str(r) for r in roots[1:-1])


def test_checkpoint_is_loaded_once_and_shared(tiny_models: TinyModels) -> None:
    manager = ModelManager([tiny_models.root], device="cpu", dtype=torch.float32)
    first = manager.load_checkpoint("tiny-shapes")
    loads = manager.loads
    second = manager.load_checkpoint("tiny-shapes")
    assert manager.loads == loads == 4  # unet, vae, text encoder, tokenizer
    assert all(a is b for a, b in zip(first, second, strict=True))
    decoder, _, decoder_vae = manager.load_checkpoint("tiny-shapes/decoder")
    assert decoder_vae.vae is first[2].vae  # the bundle's VAE is shared, not reloaded
    assert decoder.family.name == "unclip" and first[0].family.name == "sd1"
    report = manager.describe()
    json.dumps(report)
    classes = {row["class"] for row in report}
    assert {"UNet2DConditionModel", "AutoencoderKL", "CLIPTextModel", "CLIPModel"} <= classes
    assert all(row["device"] in ("cpu", None) for row in report)


def test_unknown_name_lists_the_available_ones(tiny_manager: ModelManager) -> None:
    with pytest.raises(ModelError, match="available: tiny-shapes, tiny-shapes/decoder"):
        tiny_manager.load_checkpoint("nope")


def test_single_file_checkpoint_matches_the_folder(
    tiny_models: TinyModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    manager = ModelManager([tiny_models.root], device="cpu", dtype=torch.float32)
    single = manager.load_checkpoint("tiny-single")
    folder = manager.load_checkpoint("tiny-shapes")
    pairs = [
        (single[0].unet, folder[0].unet),
        (single[2].vae, folder[2].vae),
        (single[1].text_model, folder[1].text_model),
    ]
    for loaded, reference in pairs:
        ours, theirs = loaded.state_dict(), reference.state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert single[0].scheduler_config["_class_name"] == "EulerDiscreteScheduler"


def test_single_file_that_breaks_its_architecture_is_a_clear_error(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    """Without its old config folder, the tiny file (GroupNorm of 4: no real SD UNet has that)
    is recognised as SD 1.x but cannot be built: the error names the file and the reason.
    (Single files that follow the architecture load alone: tests/families.)"""
    lonely = tmp_path / "lonely.safetensors"
    lonely.write_bytes(tiny_models.single_file.read_bytes())
    manager = ModelManager([tmp_path], device="cpu", dtype=torch.float32)
    with pytest.raises(
        ModelError,
        match=r"lonely.safetensors looks like Stable Diffusion 1.x"
        r".*does not fit that architecture",
    ):
        manager.load_checkpoint("lonely.safetensors")


def test_pickle_checkpoints_are_refused_unless_allowed(tiny_models: TinyModels) -> None:
    manager = ModelManager([tiny_models.root], device="cpu", dtype=torch.float32)
    with pytest.raises(UnsafePickleError, match="--allow-unsafe-pickle"):
        manager.load_checkpoint("unsafe")
    allowed = ModelManager(
        [tiny_models.root], device="cpu", dtype=torch.float32, allow_unsafe_pickle=True
    )
    with pytest.raises(ModelError) as caught:  # allowed, then fails as an empty checkpoint
        allowed.load_checkpoint("unsafe")
    assert not isinstance(caught.value, UnsafePickleError)


def test_folder_with_only_pickle_weights_is_refused(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    import shutil

    folder = tmp_path / "legacy"
    shutil.copytree(
        tiny_models.bundle,
        folder,
        ignore=shutil.ignore_patterns("clip", "prior*", "decoder", "upscaler"),
    )
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(folder / "unet" / "diffusion_pytorch_model.bin")
    manager = ModelManager([tmp_path], device="cpu", dtype=torch.float32)
    with pytest.raises(UnsafePickleError, match=r"diffusion_pytorch_model\.bin"):
        manager.load_checkpoint("legacy")


def test_from_environment(tiny_models: TinyModels) -> None:
    manager = ModelManager.from_environment(
        {
            "EASEL_MODELS_DIR": str(tiny_models.root),
            "EASEL_ALLOW_UNSAFE_PICKLE": "1",
            "EASEL_DEVICE": "cpu",
        }
    )
    assert manager.roots[0] == tiny_models.root
    assert manager.allow_unsafe_pickle
    assert manager.device.type == "cpu" and manager.dtype == torch.float32
    assert "tiny-single" in manager.checkpoint_names()


def test_discovery_and_node_registration_do_not_import_torch() -> None:
    code = (
        "import sys; from easel.core.plugins import load_plugins; "
        "from easel.models import discovery; load_plugins(entry_points=False); "
        "discovery.checkpoint_names(); "
        "print([m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == "[]"
