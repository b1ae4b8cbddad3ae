"""ESRGAN-family upscale models (files under `upscale_models/`) loaded by spandrel, run tile by
tile so that a large image needs only a tile's worth of model memory.

spandrel (the optional extra `easel[upscale]`) recognises the architecture and its
hyper-parameters from a state dict's keys (ESRGAN old and new layouts, Real-ESRGAN x4plus/x2plus,
RealESRGAN Compact, SwinIR, HAT, DAT, ...) and builds the module; Easel reads the file, applies
its pickle policy, and does the tiling, blending, progress and cancellation.

Tiles: the image is cut into `tile` x `tile` squares (input pixels) that overlap by at least
`overlap`; the last tile of a row or column is aligned to the image's edge, so every tile has the
full size. Each tile's output is weighted by a ramp across the overlap: the outermost quarter of
the overlap on a side that has a neighbour gets weight 0 (the pixels a zero-padded border
disturbs), the middle half fades linearly, and the weighted sum is divided by the summed
weights. A model whose receptive field reaches at most `overlap // 4` input pixels therefore
gives exactly its untiled result (up to float rounding); a model that sees further gets a
crossfade instead of a seam.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easel.models import discovery
from easel.models.errors import ModelError, UnsafePickleError

KIND = "upscale_models"
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES
MIN_TILE = 64  # out-of-memory retries halve the tile down to this
INSTALL_HINT = (
    "install the optional extra: pip install 'easel[upscale]' (from a checkout: "
    "pip install -e '.[upscale]'); spandrel imports torchvision, which must be the "
    "build made for the installed torch (docs/models.md, 'Upscale models')"
)

TileCallback = Callable[[int, int], None]
WarnCallback = Callable[[str], None]


@dataclass(eq=False)
class SpandrelUpscaler:
    """An UPSCALE_MODEL handle for a single-image model file loaded by spandrel (ESRGAN ...).

    `descriptor` is spandrel's ImageModelDescriptor; its `model` (a torch module) is held by
    the model manager, which moves it to the compute device when a node runs it."""

    name: str
    path: Path
    descriptor: Any
    manager: Any = field(repr=False)

    @property
    def scale(self) -> int:
        return int(self.descriptor.scale)

    @property
    def architecture(self) -> str:
        return str(self.descriptor.architecture.name)

    @property
    def input_channels(self) -> int:
        return int(self.descriptor.input_channels)


def import_spandrel() -> Any:
    """The spandrel module, or a ModelError saying how to install it."""
    try:
        import spandrel
    except Exception as exc:
        # ImportError when it is missing; RuntimeError ("operator torchvision::nms does not
        # exist") when the torchvision it imports was built for another torch.
        raise ModelError(
            f"ESRGAN-family upscale models need spandrel, which could not be "
            f"imported ({type(exc).__name__}: {exc}); {INSTALL_HINT}"
        ) from exc
    return spandrel


def names(roots: list[Path] | None = None) -> list[str]:
    """Model files of the `upscale_models` kind (names with their extension, as ComfyUI's)."""
    return [
        name
        for name in discovery.kind_names(KIND, roots=roots)
        if Path(name).suffix.lower() in SUFFIXES
    ]


def read_state_dict(path: Path, *, allow_unsafe_pickle: bool) -> dict[str, Any]:
    """A file's tensors, canonicalised as spandrel expects (`params_ema`, `module.` unwrapped).
    Pickle files are refused unless unsafe pickle is allowed."""
    spandrel = import_spandrel()
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ModelError(f"{path}: an upscale model is a {', '.join(SUFFIXES)} file")
    if suffix in PICKLE_SUFFIXES and not allow_unsafe_pickle:
        raise UnsafePickleError(path)
    try:
        if suffix in SAFETENSORS_SUFFIXES:
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            # spandrel's reader: torch.load through a restricted unpickler (tensors and
            # OrderedDicts only), and TorchScript for `.pt` files.
            return dict(spandrel.ModelLoader("cpu").load_state_dict_from_file(path))
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"{path}: cannot read the file ({type(exc).__name__}: {exc})") from exc
    return dict(spandrel.canonicalize_state_dict(state))


def load_descriptor(path: Path, *, allow_unsafe_pickle: bool) -> Any:
    """spandrel's ImageModelDescriptor for a model file, in eval mode on the CPU."""
    spandrel = import_spandrel()
    state = read_state_dict(path, allow_unsafe_pickle=allow_unsafe_pickle)
    try:
        descriptor = spandrel.ModelLoader("cpu").load_from_state_dict(state)
    except spandrel.UnsupportedModelError as exc:
        raise ModelError(
            f"{path}: spandrel does not recognise this model's architecture "
            f"(first keys: {', '.join(list(state)[:4]) or 'none'}); only "
            "image upscale/restoration models it supports can be loaded"
        ) from exc
    except Exception as exc:
        raise ModelError(
            f"{path}: spandrel could not build the model ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise ModelError(
            f"{path} is a {descriptor.architecture.name} "
            f"{descriptor.purpose.lower()} model (image and mask in), not an "
            "image upscale model"
        )
    return descriptor.eval()


def _dtype_for(descriptor: Any, wanted: Any) -> Any:
    """The manager's dtype when the architecture supports it, else float32."""
    import torch

    if wanted == torch.bfloat16 and descriptor.supports_bfloat16:
        return wanted
    if wanted == torch.float16 and descriptor.supports_half:
        return wanted
    return torch.float32


def load(manager: Any, name: str) -> SpandrelUpscaler:
    """The shared handle of upscale model `name` (resolved in the manager's models folders).

    Loaded once per file version; the module is registered with the manager so that it is
    placed on the device, offloaded and listed like every other model."""
    path = discovery.resolve(KIND, name, roots=manager.roots)
    stat = path.stat()
    key = (str(path.resolve()), f"{stat.st_size}:{stat.st_mtime_ns}")

    def make() -> SpandrelUpscaler:
        descriptor = load_descriptor(path, allow_unsafe_pickle=manager.allow_unsafe_pickle)
        descriptor.model.to(dtype=_dtype_for(descriptor, manager.dtype))
        # The manager has no public "hold this module" call yet; `_load` is its load-once
        # registry (easel.models internal), which `place` and `describe` read.
        manager._load((key[0], "upscale_model", key[1]), lambda: descriptor.model)
        return SpandrelUpscaler(name, path, descriptor, manager)

    handle: SpandrelUpscaler = manager._handle(("upscale_model", *key), make)
    return handle


# -- tiling ------------------------------------------------------------------------------------
def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets along one axis: stride `tile - overlap`, the last tile ending at the edge."""
    if tile <= 0 or size <= tile:
        return [0]
    stride = max(1, tile - overlap)
    starts = list(range(0, size - tile, stride))
    starts.append(size - tile)
    return starts


def axis_weights(start: int, length: int, size: int, overlap: int, scale: int) -> Any:
    """Blend weights of one tile along one axis, in output pixels (see the module docstring)."""
    import torch

    weights = torch.ones(length * scale)
    if overlap <= 0:
        return weights
    margin = overlap // 4
    ramp = max(overlap - 2 * margin, 1)
    centre = (torch.arange(length * scale, dtype=torch.float64) + 0.5) / scale  # input px
    if start > 0:
        weights = torch.minimum(weights, ((centre - margin) / ramp).clamp(0, 1).float())
    if start + length < size:
        weights = torch.minimum(weights, ((length - centre - margin) / ramp).clamp(0, 1).float())
    return weights


def tile_count(height: int, width: int, tile: int, overlap: int) -> int:
    return len(tile_starts(height, tile, overlap)) * len(tile_starts(width, tile, overlap))


def upscale(
    handle: SpandrelUpscaler,
    image: Any,
    *,
    tile: int = 512,
    overlap: int = 32,
    on_tile: TileCallback | None = None,
    warn: WarnCallback | None = None,
) -> Any:
    """`image` [B, C, H, W] in [0, 1] -> [B, C', H*s, W*s] in [0, 1] (float32, CPU).

    `tile` 0 runs each image whole. `on_tile(done, total)` is called after every tile (it may
    raise to cancel). When the device runs out of memory the tile is halved (down to
    MIN_TILE) and the image started again, with a warning."""
    import torch

    if image.ndim != 4:
        raise ModelError(f"expected an image batch [B, C, H, W], got shape {tuple(image.shape)}")
    channels = image.shape[1]
    if channels != handle.input_channels:
        raise ModelError(
            f"{handle.name} takes {handle.input_channels}-channel images, this "
            f"image has {channels} channels"
        )
    if _tiles_internally(handle.descriptor):
        tile = 0
    while True:
        try:
            return _upscale_tiles(handle, image, tile, overlap, on_tile)
        except torch.OutOfMemoryError:
            current = tile or max(image.shape[-2:])
            if current <= MIN_TILE:
                raise
            tile = max(MIN_TILE, current // 2)
            overlap = min(overlap, tile // 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if warn is not None:
                warn(f"out of device memory: retrying with {tile}x{tile} tiles")


def _tiles_internally(descriptor: Any) -> bool:
    """Models that need the whole image (spandrel's ModelTiling.INTERNAL) are never cut."""
    tiling = getattr(descriptor, "tiling", None)
    return getattr(tiling, "name", "") == "INTERNAL"


def _upscale_tiles(
    handle: SpandrelUpscaler, image: Any, tile: int, overlap: int, on_tile: TileCallback | None
) -> Any:
    import torch

    descriptor = handle.descriptor
    model = handle.manager.place(descriptor.model)
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    batch, _, height, width = image.shape
    scale = handle.scale
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    tile_h, tile_w = min(height, tile or height), min(width, tile or width)
    total, done = batch * len(ys) * len(xs), 0
    out = torch.zeros(batch, descriptor.output_channels, height * scale, width * scale)
    weight_sum = torch.zeros(1, height * scale, width * scale)
    with torch.inference_mode():
        for y in ys:
            wy = axis_weights(y, tile_h, height, overlap, scale)
            for x in xs:
                weights = wy[:, None] * axis_weights(x, tile_w, width, overlap, scale)[None, :]
                rows = slice(y * scale, (y + tile_h) * scale)
                cols = slice(x * scale, (x + tile_w) * scale)
                weight_sum[:, rows, cols] += weights
                for b in range(batch):
                    piece = image[b : b + 1, :, y : y + tile_h, x : x + tile_w]
                    result = descriptor(piece.to(device, dtype)).float().cpu()
                    expected = (1, out.shape[1], tile_h * scale, tile_w * scale)
                    if tuple(result.shape) != expected:
                        raise ModelError(
                            f"{handle.name} returned shape {tuple(result.shape)} "
                            f"for a {tile_w}x{tile_h} tile, expected {expected}"
                        )
                    out[b, :, rows, cols] += result[0] * weights
                    done += 1
                    if on_tile is not None:
                        on_tile(done, total)
    return (out / weight_sum).clamp(0, 1)
