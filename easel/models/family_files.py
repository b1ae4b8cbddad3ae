"""Which module loads each family's files: the tables every model family adds itself to.

- `DIFFUSION_MODELS`: modules that load a diffusion model file alone (ComfyUI's UNETLoader,
  `diffusion_models/`). Each provides `recognise_diffusion_model(state) -> bool` (state: key ->
  anything with `.shape`; a safetensors file's header is enough) and
  `diffusion_model(name, path, manager, weight_dtype) -> ModelHandle`.
- `CHECKPOINTS`: modules for single-file checkpoints holding every part (ComfyUI's
  CheckpointLoaderSimple) and diffusers folders of families other than Stable Diffusion. Each
  provides `is_checkpoint(state) -> bool`, `single_file_checkpoint(name, path, manager)`,
  `is_folder(folder) -> bool` and `folder_checkpoint(name, folder, manager)`, both returning
  (MODEL, CLIP, VAE) handles. Stable Diffusion files are the fallback (easel.models.checkpoints).
- `CLIP_TYPES`: ComfyUI's CLIPLoader / DualCLIPLoader / TripleCLIPLoader / QuadrupleCLIPLoader
  `type`, by number of files: "module:function" with the signature
  `(name, paths, manager) -> ClipHandle`.

Recognition reads a safetensors file's header only (no tensor is read), so asking every family
costs nothing; a pickled file is read whole, once.
"""

from __future__ import annotations

import importlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError

DIFFUSION_MODELS: tuple[str, ...] = (
    "easel.models.hunyuan15_loading",  # before LongCat's and Flux.1's: double_blocks too
    "easel.models.lotus_loading",  # an SD 2 UNet (LDM keys) with Lotus's task embedding
    "easel.models.flux3_loading",
    "easel.models.flux2_loading",
    "easel.models.ovis_loading",  # before LongCat's and Flux.1's: double_blocks, txt_norm
    "easel.models.longcat_loading",  # before Flux.1's: double_blocks without vector_in
    "easel.models.flux_loading",
    "easel.models.mage_loading",  # before Qwen-Image's: its keys, on 128 latent channels
    "easel.models.qwen_layered_loading",  # before Qwen-Image's: the same keys and one more
    "easel.models.qwen_loading",
    "easel.models.qwen21_loading",
    "easel.models.omnigen2_loading",  # time_caption_embed + ref_image_patch_embedder
    "easel.models.boogu_loading",  # OmniGen2's embedders + double_stream_layers
    "easel.models.ideogram4_loading",  # before Lumina's: layers.N.attention.qkv too
    "easel.models.fibo2_loading",  # before Lumina's: noise_refiner too
    "easel.models.lumina_loading",
    "easel.models.hidream_loading",
    "easel.models.chroma_loading",
    "easel.models.sd3_loading",
    "easel.models.krea2_loading",
    "easel.models.ernie_loading",
    "easel.models.kandinsky5_loading",
    "easel.models.joyimage_loading",
    "easel.models.minimax_loading",
    "easel.models.wan_loading",
    "easel.models.anima_loading",
)
# SD3 first: its diffusers folders also have the transformer/ and text_encoder_2/ of Flux's
CHECKPOINTS: tuple[str, ...] = (
    "easel.models.hunyuan15_loading",  # before Flux: its folders have text_encoder_2/ too
    "easel.models.hidream_loading",  # before Flux: its folders also have text_encoder_2/
    "easel.models.kandinsky5_loading",  # before Flux: its folders have text_encoder_2/ too
    "easel.models.chroma_loading",
    "easel.models.sd3_loading",
    "easel.models.flux2_loading",  # before Flux.1's, whose checkpoints have double_blocks too
    "easel.models.flux_loading",
    "easel.models.qwen21_loading",  # before Qwen-Image's: its folders are QwenImage*
    "easel.models.qwen_loading",
    "easel.models.lumina_loading",
    "easel.models.krea2_loading",
    "easel.models.longcat_loading",
    "easel.models.ovis_loading",
    "easel.models.ernie_loading",
    "easel.models.flux3_loading",
    "easel.models.anima_loading",  # AnimaModularPipeline folders (modular_model_index.json)
    "easel.models.wan_loading",
    "easel.models.sam3",  # SAM 3 segmentation: CheckpointLoader gives its MODEL and CLIP
)
CLIP_TYPES: dict[int, dict[str, str]] = {
    1: {
        "stable_diffusion": "easel.models.anima_loading:sd_clip",  # CLIP-L, or Anima's Qwen3
        "flux2": "easel.models.ernie_loading:flux2_clip",  # Flux.2, or ERNIE-Image's Ministral
        "chroma": "easel.models.chroma_loading:chroma_clip",
        "qwen_image": "easel.models.qwen_loading:qwen_clip",
        "longcat_image": "easel.models.longcat_loading:longcat_clip",
        "ovis": "easel.models.ovis_loading:ovis_clip",
        "lumina2": "easel.models.lumina_loading:lumina2_clip",
        "sd3": "easel.models.sd3_loading:sd3_clip",
        "krea2": "easel.models.krea2_loading:krea2_clip",
        "joyimage": "easel.models.joyimage_loading:joyimage_clip",
        "ideogram4": "easel.models.ideogram4_loading:ideogram4_clip",
        "flux3": "easel.models.flux3_loading:flux3_clip",
        "fibo2": "easel.models.fibo2_loading:fibo2_clip",
        "omnigen2": "easel.models.omnigen2_loading:omnigen2_clip",
        "boogu": "easel.models.boogu_loading:boogu_clip",
        "minimax": "easel.models.minimax_loading:minimax_clip",
        "mage": "easel.models.mage_loading:mage_clip",
        "wan": "easel.models.wan_loading:wan_clip",
    },
    2: {
        "flux": "easel.models.flux_loading:flux_clip",
        "sd3": "easel.models.sd3_loading:sd3_clip",
        "kandinsky5_image": "easel.models.kandinsky5_loading:kandinsky5_clip",
        "hunyuan_video_15": "easel.models.hunyuan15_loading:hunyuan15_clip",
    },
    3: {"sd3": "easel.models.sd3_loading:sd3_clip"},
    4: {"hidream": "easel.models.hidream_loading:hidream_clip"},
}
# what DiffusionModelLoader reads, for its error message
FAMILY_NAMES = (
    "Flux.1, Flux.2, Qwen-Image, Z-Image, Lumina 2, HiDream-I1, Chroma, SD3 / 3.5, Krea 2, Lotus, "
    "LongCat-Image, ERNIE-Image, Ovis-Image, Kandinsky 5, JoyImage Edit, Flux 3, "
    "Fibo 2.0, Anima, HunyuanVideo 1.5 / Capybara, Wan 2.1 / ChronoEdit, Mage-Flow, "
    "MiniMax H3, OmniGen2, Boogu-Image"
)


@dataclass(frozen=True)
class Shape:
    """A tensor known by its header entry: dtype and shape."""

    shape: tuple[int, ...]
    dtype: str = ""


SAFETENSORS = (".safetensors", ".sft")
MAX_HEADER = 100 * 1024 * 1024


def header(path: Path) -> dict[str, Shape] | None:
    """Key -> Shape of a safetensors file, from its JSON header; None when `path` is not a
    readable safetensors file (the loader then reads the file itself and reports)."""
    if path.suffix.lower() not in SAFETENSORS:
        return None
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if not 0 < length <= MAX_HEADER:
                return None
            entries = json.loads(handle.read(length))
    except (OSError, ValueError, struct.error):
        return None
    if not isinstance(entries, dict):
        return None
    return {
        key: Shape(tuple(int(n) for n in value.get("shape", ())), str(value.get("dtype", "")))
        for key, value in entries.items()
        if key != "__metadata__" and isinstance(value, dict)
    }


def keys_of(path: Path, manager: Any) -> Mapping[str, Any]:
    """A file's keys with shapes: the safetensors header, else the whole state dict."""
    found = header(path)
    if found is not None:
        return found
    from easel.models import gguf_files

    if gguf_files.is_gguf(path):
        return gguf_files.shapes(path)
    from easel.models.state_dicts import read_state_dict

    return read_state_dict(path, getattr(manager, "allow_unsafe_pickle", False))


def _module(name: str) -> Any:
    return importlib.import_module(name)


def diffusion_model(name: str, path: Path, manager: Any, weight_dtype: str = "default") -> Any:
    """MODEL from a diffusion-model-only file, loaded by the family that recognises it."""
    from easel.models.families.recognise import summarise

    state = keys_of(path, manager)
    for module_name in DIFFUSION_MODELS:
        module = _module(module_name)
        if module.recognise_diffusion_model(state):
            return module.diffusion_model(name, path, manager, weight_dtype)
    raise ModelError(
        f"{path.name} is not a diffusion model Easel recognises ({summarise(state)}). "
        f"Easel reads these from diffusion_models/: {FAMILY_NAMES}"
    )


def checkpoint_module(path: Path, manager: Any, *, folder: bool) -> Any | None:
    """The module that loads this checkpoint (file or diffusers folder), or None for the
    Stable Diffusion families' own loader."""
    state = None if folder else header(path)
    for module_name in CHECKPOINTS:
        module = _module(module_name)
        if folder and module.is_folder(path):
            return module
        if state is not None and module.is_checkpoint(state):
            return module
    return None


def clip_types(count: int) -> list[str]:
    """The CLIP types of the loader taking `count` files."""
    return list(CLIP_TYPES.get(count, {}))


def load_clip(type_name: str, name: str, paths: list[Path], manager: Any) -> Any:
    """CLIP of ComfyUI's loader `type` from `paths` (one per file the type takes)."""
    table = CLIP_TYPES.get(len(paths), {})
    target = table.get(type_name)
    if target is None:
        known = ", ".join(table) or "none"
        raise ModelError(
            f"type {type_name!r} takes no {len(paths)} text encoder file(s); "
            f"the types for {len(paths)}: {known}"
        )
    module_name, function = target.split(":")
    return getattr(_module(module_name), function)(name, paths, manager)
