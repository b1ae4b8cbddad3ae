"""ESRGAN-family upscale models through spandrel: tiny state dicts in the original key layouts
(ESRGAN `model.0...`, Real-ESRGAN `conv_first...` x4plus/x2plus, RealESRGAN Compact), loaded
from .safetensors/.pth files, compared with spandrel's own model call, and tiled."""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from easel.core.context import Cancelled, CancelToken, Context
from easel.models import upscale_models
from easel.models.errors import ModelError, UnsafePickleError
from easel.models.manager import ModelManager

GROWTH = 32  # ESRGAN's dense-block growth channels (spandrel fixes it at 32, as the original)


def _conv(
    state: dict[str, torch.Tensor],
    key: str,
    out_ch: int,
    in_ch: int,
    gen: torch.Generator,
    bias: float = 0.0,
    gain: float = 1.0,
) -> None:
    std = gain / math.sqrt(in_ch * 9)
    state[f"{key}.weight"] = torch.randn(out_ch, in_ch, 3, 3, generator=gen) * std
    state[f"{key}.bias"] = torch.full((out_ch,), bias)


def esrgan_old_layout(
    nf: int = 8, blocks: int = 1, scale: int = 4, seed: int = 0
) -> dict[str, torch.Tensor]:
    """The original ESRGAN layout (`model.0`, `model.1.sub.N.RDBr.convc.0`, upsampling convs
    at model.3, model.6, ..., then HR conv and last conv)."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    _conv(state, "model.0", nf, 3, gen)
    for block in range(blocks):
        for rdb in (1, 2, 3):
            for c in range(1, 6):
                _conv(
                    state,
                    f"model.1.sub.{block}.RDB{rdb}.conv{c}.0",
                    nf if c == 5 else GROWTH,
                    nf + (c - 1) * GROWTH,
                    gen,
                )
    _conv(state, f"model.1.sub.{blocks}", nf, nf, gen)
    ups = int(math.log2(scale))
    for i in range(1, ups + 1):
        _conv(state, f"model.{3 * i}", nf, nf, gen)
    _conv(state, f"model.{3 * ups + 2}", nf, nf, gen)
    _conv(state, f"model.{3 * ups + 4}", 3, nf, gen, bias=0.5)
    return state


def realesrgan_layout(
    nf: int = 8, blocks: int = 1, unshuffle: int = 1, seed: int = 1
) -> dict[str, torch.Tensor]:
    """Real-ESRGAN's (basicsr RRDBNet) layout: x4plus, or x2plus with `unshuffle=2` (the input
    is pixel-unshuffled, so conv_first takes 12 channels, and the two 2x upsamplings give 2x)."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    _conv(state, "conv_first", nf, 3 * unshuffle**2, gen)
    for block in range(blocks):
        for rdb in (1, 2, 3):
            for c in range(1, 6):
                _conv(
                    state,
                    f"body.{block}.rdb{rdb}.conv{c}",
                    nf if c == 5 else GROWTH,
                    nf + (c - 1) * GROWTH,
                    gen,
                )
    for key in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        _conv(state, key, nf, nf, gen)
    _conv(state, "conv_last", 3, nf, gen, bias=0.5)
    return state


def compact_layout(
    nf: int = 8, convs: int = 1, scale: int = 4, seed: int = 2
) -> dict[str, torch.Tensor]:
    """RealESRGAN Compact (SRVGGNetCompact, realesr-general-x4v3): conv, PReLU, convs x
    (conv, PReLU), conv to 3*scale^2 channels, pixel shuffle. Its receptive field reaches
    `convs + 2` input pixels."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    _conv(state, "body.0", nf, 3, gen, gain=0.5)
    for i in range(convs + 1):
        if i:
            _conv(state, f"body.{2 * i}", nf, nf, gen, gain=0.5)
        state[f"body.{2 * i + 1}.weight"] = torch.full((nf,), 0.25)
    # The network adds the nearest-upsampled input to its output: no bias keeps it in range.
    _conv(state, f"body.{2 * convs + 2}", 3 * scale**2, nf, gen, gain=0.5)
    return state


def save(state: dict[str, torch.Tensor], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


def models_folder(root: Path) -> Path:
    """A ComfyUI-style models folder with the tiny upscale models, in both file formats."""
    folder = root / "upscale_models"
    save(esrgan_old_layout(), folder / "4x-esrgan-old.safetensors")
    save(esrgan_old_layout(), folder / "legacy" / "4x-esrgan-old.pth")
    save(realesrgan_layout(), folder / "RealESRGAN_x4plus.safetensors")
    save(realesrgan_layout(unshuffle=2), folder / "RealESRGAN_x2plus.pth")
    save(compact_layout(), folder / "realesr-compact-x4.safetensors")
    (folder / "notes.txt").write_text("not a model")
    return root


def spandrel_reference(path: Path) -> Any:
    """spandrel's own loading of the file, independent of Easel."""
    import spandrel

    return spandrel.ModelLoader("cpu").load_from_file(path).eval()


def cpu_manager(root: Path, allow_pickle: bool = False) -> ModelManager:
    return ModelManager([root], device="cpu", dtype=torch.float32, allow_unsafe_pickle=allow_pickle)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models_folder(tmp_path_factory.mktemp("upscale"))


def test_names_are_the_model_files_with_their_extension(folder: Path) -> None:
    assert upscale_models.names([folder]) == [
        "4x-esrgan-old.safetensors",
        "RealESRGAN_x2plus.pth",
        "RealESRGAN_x4plus.safetensors",
        "legacy/4x-esrgan-old.pth",
        "realesr-compact-x4.safetensors",
    ]


@pytest.mark.parametrize(
    ("name", "architecture", "scale"),
    [
        ("4x-esrgan-old.safetensors", "ESRGAN", 4),
        ("legacy/4x-esrgan-old.pth", "ESRGAN", 4),
        ("RealESRGAN_x4plus.safetensors", "ESRGAN", 4),
        ("RealESRGAN_x2plus.pth", "ESRGAN", 2),
        ("realesr-compact-x4.safetensors", "RealESRGAN Compact", 4),
    ],
)
def test_detected_and_equal_to_spandrels_own_call(
    folder: Path, name: str, architecture: str, scale: int
) -> None:
    handle = upscale_models.load(cpu_manager(folder, allow_pickle=True), name)
    assert (handle.architecture, handle.scale) == (architecture, scale)
    image = torch.rand(2, 3, 12, 20, generator=torch.Generator().manual_seed(3))
    out = upscale_models.upscale(handle, image, tile=0)
    assert out.shape == (2, 3, 12 * scale, 20 * scale) and out.dtype == torch.float32
    reference = spandrel_reference(folder / "upscale_models" / name)
    with torch.inference_mode():
        expected = torch.cat([reference(image[i : i + 1]) for i in range(2)])
    assert torch.equal(out, expected)
    assert float(out.std()) > 0.05 and 0 < float(out.mean()) < 1  # not saturated


def test_old_and_new_layouts_of_the_same_weights_give_the_same_image(tmp_path: Path) -> None:
    """The new (Real-ESRGAN) layout renamed to the old one is the same network."""
    new = realesrgan_layout()
    renames = {
        "conv_first": "model.0",
        "conv_body": "model.1.sub.1",
        "conv_up1": "model.3",
        "conv_up2": "model.6",
        "conv_hr": "model.8",
        "conv_last": "model.10",
    }
    old = {}
    for key, value in new.items():
        layer, kind = key.rsplit(".", 1)
        if layer.startswith("body."):
            _, block, rdb, conv = layer.split(".")
            old[f"model.1.sub.{block}.RDB{rdb[3:]}.{conv}.0.{kind}"] = value
        else:
            old[f"{renames[layer]}.{kind}"] = value
    save(new, tmp_path / "upscale_models" / "new.safetensors")
    save(old, tmp_path / "upscale_models" / "old.safetensors")
    manager = cpu_manager(tmp_path)
    image = torch.rand(1, 3, 9, 7, generator=torch.Generator().manual_seed(4))
    a = upscale_models.upscale(upscale_models.load(manager, "new.safetensors"), image, tile=0)
    b = upscale_models.upscale(upscale_models.load(manager, "old.safetensors"), image, tile=0)
    assert torch.equal(a, b)


def test_pickle_files_are_refused_unless_allowed(folder: Path) -> None:
    with pytest.raises(UnsafePickleError, match="pickle"):
        upscale_models.load(cpu_manager(folder), "RealESRGAN_x2plus.pth")
    assert (
        upscale_models.load(cpu_manager(folder, allow_pickle=True), "RealESRGAN_x2plus.pth").scale
        == 2
    )


def test_loaded_once_shared_and_held_by_the_manager(folder: Path) -> None:
    manager = cpu_manager(folder)
    first = upscale_models.load(manager, "4x-esrgan-old.safetensors")
    assert upscale_models.load(manager, "4x-esrgan-old.safetensors") is first
    assert manager.loads == 1
    [row] = manager.describe()
    assert row["component"] == "upscale_model" and row["class"] == "RRDBNet"
    assert row["bytes"] > 0 and row["path"].endswith("4x-esrgan-old.safetensors")


def test_a_missing_name_says_where_it_looked(folder: Path) -> None:
    with pytest.raises(
        ModelError,
        match=r"no upscale_models model named '4x-nope.pth'.*"
        r"Looked in: .*upscale_models",
    ):
        upscale_models.load(cpu_manager(folder), "4x-nope.pth")


def test_an_unknown_architecture_is_a_clear_error(tmp_path: Path) -> None:
    save({"encoder.weight": torch.zeros(2, 2)}, tmp_path / "upscale_models" / "odd.safetensors")
    with pytest.raises(
        ModelError,
        match=r"odd\.safetensors: spandrel does not recognise.*"
        r"encoder\.weight",
    ):
        upscale_models.load(cpu_manager(tmp_path), "odd.safetensors")


def test_a_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "upscale_models" / "broken.safetensors"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match=r"broken\.safetensors: cannot read the file"):
        upscale_models.load(cpu_manager(tmp_path), "broken.safetensors")


def test_inpainting_models_are_refused(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """spandrel also loads inpainting models (image + mask in: a MaskedImageModelDescriptor,
    e.g. LaMa); they are not upscalers."""
    import spandrel

    masked = SimpleNamespace(purpose="Inpainting", architecture=SimpleNamespace(name="LaMa"))
    monkeypatch.setattr(spandrel.ModelLoader, "load_from_state_dict", lambda self, sd: masked)
    with pytest.raises(ModelError, match=r"LaMa inpainting model .*not an image upscale model"):
        upscale_models.load(cpu_manager(folder), "4x-esrgan-old.safetensors")


def test_without_spandrel_the_error_says_how_to_install(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "spandrel", None)  # what a missing package looks like
    with pytest.raises(ModelError, match=r"need spandrel.*pip install .*'\.\[upscale\]'"):
        upscale_models.load(cpu_manager(folder), "4x-esrgan-old.safetensors")


def test_the_wrong_channel_count_is_refused(folder: Path) -> None:
    handle = upscale_models.load(cpu_manager(folder), "4x-esrgan-old.safetensors")
    with pytest.raises(ModelError, match="takes 3-channel images, this image has 4"):
        upscale_models.upscale(handle, torch.rand(1, 4, 8, 8), tile=0)


def test_a_model_returning_the_wrong_size_is_a_clear_error(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = upscale_models.load(cpu_manager(folder), "realesr-compact-x4.safetensors")
    monkeypatch.setattr(handle.descriptor.model, "forward", lambda x: x.repeat(1, 1, 2, 2))
    with pytest.raises(
        ModelError,
        match=r"returned shape \(1, 3, 16, 24\) for a 12x8 tile, "
        r"expected \(1, 3, 32, 48\)",
    ):
        upscale_models.upscale(handle, torch.rand(1, 3, 8, 12), tile=0)


# -- tiling -----------------------------------------------------------------------------------
def test_tile_starts_cover_the_axis_with_full_tiles() -> None:
    assert upscale_models.tile_starts(100, 0, 8) == [0]
    assert upscale_models.tile_starts(40, 64, 8) == [0]
    assert upscale_models.tile_starts(100, 32, 8) == [0, 24, 48, 68]
    for size, tile, overlap in [(100, 32, 8), (257, 64, 16), (65, 64, 32), (500, 128, 0)]:
        starts = upscale_models.tile_starts(size, tile, overlap)
        assert starts[0] == 0 and starts[-1] + tile == size
        assert all(b - a <= tile - overlap for a, b in itertools.pairwise(starts))


def test_blend_weights_never_vanish_and_ignore_the_tile_borders() -> None:
    size, tile, overlap, scale = 100, 32, 16, 2
    total = torch.zeros(size * scale)
    for start in upscale_models.tile_starts(size, tile, overlap):
        w = upscale_models.axis_weights(start, tile, size, overlap, scale)
        if start > 0:  # the outer quarter of the overlap on an inner side is not used
            assert torch.all(w[: overlap // 4 * scale] == 0)
        if start + tile < size:
            assert torch.all(w[-(overlap // 4) * scale :] == 0)
        total[start * scale : (start + tile) * scale] += w
    assert float(total.min()) >= 1.0 - 1e-6


def test_tiled_equals_untiled_when_the_receptive_field_fits_the_overlap(folder: Path) -> None:
    """Compact with one body conv sees 3 input pixels around each pixel; overlap 16 discards
    the outer 4 pixels of each tile's inner sides, so tiling changes nothing."""
    handle = upscale_models.load(cpu_manager(folder), "realesr-compact-x4.safetensors")
    image = torch.rand(2, 3, 70, 45, generator=torch.Generator().manual_seed(5))
    whole = upscale_models.upscale(handle, image, tile=0)
    tiled = upscale_models.upscale(handle, image, tile=32, overlap=16)
    assert upscale_models.tile_count(70, 45, 32, 16) == 4 * 2
    assert float((tiled - whole).abs().max()) <= 1e-5


def test_tiles_blend_without_seams_on_a_wide_receptive_field(folder: Path) -> None:
    """ESRGAN's RRDB reaches ~18 input pixels around each pixel, more than an overlap of 8
    hides (2 discarded): the crossfade keeps the result close to the untiled one (measured:
    max 0.049, mean 5e-4), where hard tile edges differ by up to 0.35. With the default
    overlap of 32 (8 discarded) the difference is float rounding (measured 1.3e-6)."""
    handle = upscale_models.load(cpu_manager(folder), "4x-esrgan-old.safetensors")
    image = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(6))
    whole = upscale_models.upscale(handle, image, tile=0)
    blended = (upscale_models.upscale(handle, image, tile=24, overlap=8) - whole).abs()
    hard = (upscale_models.upscale(handle, image, tile=24, overlap=0) - whole).abs()
    assert float(blended.max()) < 0.1 and float(blended.mean()) < 1e-3
    assert float(hard.max()) > 5 * float(blended.max())

    image = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(6))
    whole = upscale_models.upscale(handle, image, tile=0)
    tiled = upscale_models.upscale(handle, image, tile=64, overlap=32)
    assert float((tiled - whole).abs().max()) <= 1e-5


def test_the_model_only_ever_sees_a_tile(folder: Path) -> None:
    handle = upscale_models.load(cpu_manager(folder), "realesr-compact-x4.safetensors")
    seen: list[tuple[int, ...]] = []
    hook = handle.descriptor.model.register_forward_pre_hook(
        lambda module, args: seen.append(tuple(args[0].shape))
    )
    try:
        upscale_models.upscale(handle, torch.rand(1, 3, 100, 60), tile=32, overlap=8)
    finally:
        hook.remove()
    assert len(seen) == upscale_models.tile_count(100, 60, 32, 8) == 4 * 3
    assert all(shape == (1, 3, 32, 32) for shape in seen)


def test_progress_per_tile_and_cancellation_between_tiles(folder: Path) -> None:
    handle = upscale_models.load(cpu_manager(folder), "realesr-compact-x4.safetensors")
    image = torch.rand(2, 3, 40, 40)
    steps: list[tuple[int, int]] = []
    upscale_models.upscale(
        handle, image, tile=32, overlap=8, on_tile=lambda i, n: steps.append((i, n))
    )
    assert steps == [(i, 8) for i in range(1, 9)]  # 2 images x 2 x 2 tiles

    token = CancelToken()
    calls: list[int] = []

    def cancel_after_two(step: int, total: int, preview: Any = None) -> None:
        calls.append(step)
        if step == 2:
            token.cancel("stop")

    ctx = Context(cancel_token=token, on_progress=cancel_after_two)
    with pytest.raises(Cancelled):
        upscale_models.upscale(handle, image, tile=32, overlap=8, on_tile=ctx.progress)
    assert calls == [1, 2]


def test_out_of_memory_halves_the_tile_and_warns(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = upscale_models.load(cpu_manager(folder), "realesr-compact-x4.safetensors")
    model = handle.descriptor.model
    real_forward = model.forward

    def small_tiles_only(x: torch.Tensor) -> torch.Tensor:
        if max(x.shape[-2:]) > 64:
            raise torch.OutOfMemoryError("tile too large")
        return real_forward(x)

    monkeypatch.setattr(model, "forward", small_tiles_only)
    image = torch.rand(1, 3, 150, 100, generator=torch.Generator().manual_seed(7))
    warnings: list[str] = []
    out = upscale_models.upscale(handle, image, tile=256, overlap=16, warn=warnings.append)
    assert warnings == [
        "out of device memory: retrying with 128x128 tiles",
        "out of device memory: retrying with 64x64 tiles",
    ]
    assert torch.equal(out, upscale_models.upscale(handle, image, tile=64, overlap=16))
