"""Image files in and out: LoadImage, SaveImage (PNG with the workflow embedded), PreviewImage."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from easel.core.budget import budget_of
from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Image, Mask

PREVIEW_FOLDER = "preview"
DIGITS = 5
_claim_lock = threading.Lock()  # only used where the file system has no hard links


# -- LoadImage ---------------------------------------------------------------------------------
def resolve_input_image(ctx: Context, name: str) -> Path:
    """The file `name` stands for: inside the upload folder when the host has one (the server),
    else a path as given (the command line). Raises NodeError on anything else."""
    if not name or not name.strip():
        raise NodeError("no image given: name an image file", "image")
    input_dir = ctx.services.get("input_dir")
    if input_dir is None:
        path = Path(name).expanduser()
        if not path.is_file():
            where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
            raise NodeError(f"no such image file: {name}{where}", "image")
        return path
    root = Path(input_dir).resolve()
    if (
        PurePosixPath(name).is_absolute()
        or PureWindowsPath(name).is_absolute()
        or PureWindowsPath(name).drive
        or ".." in PureWindowsPath(name).parts
        or "\x00" in name
    ):
        raise NodeError(
            f"{name!r} is not the name of an uploaded image: names are relative "
            "to the upload folder, without '..' or a drive",
            "image",
        )
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise NodeError(f"{name!r} points outside the upload folder (through a link)", "image")
    if not path.is_file():
        raise NodeError(f"no uploaded image named {name!r}: upload it first", "image")
    return path


def _check_load(ctx: Context, inputs: dict[str, Any]) -> list[tuple[str, str]]:
    if "image" not in inputs:
        return []  # linked: known only when the run gets there
    try:
        resolve_input_image(ctx, inputs.get("image", ""))
    except NodeError as exc:
        return [(exc.input or "image", exc.message)]
    return []


def _file_hash(ctx: Context, inputs: dict[str, Any]) -> str:
    """The content hash of the image file, so that an edited file loads again."""
    if "image" not in inputs:
        return ""  # the name comes through a link: the upstream key stands for it
    path = resolve_input_image(ctx, inputs.get("image", ""))
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def image_to_tensor(picture: Any) -> Any:
    """A Pillow image as a float32 [1, 3, H, W] tensor in [0, 1] (16-bit greyscale kept
    at full precision, transparency dropped)."""
    import numpy as np
    import torch

    if picture.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(picture, dtype=np.float32)
        array = np.clip(array / 65535.0, 0.0, 1.0)[..., None].repeat(3, axis=-1)
    else:
        array = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).unsqueeze(0)


def alpha_mask(picture: Any) -> Any:
    """ComfyUI's LoadImage mask: 1 where the picture is transparent, as a [1, H, W] tensor
    (zeros when it has no alpha channel)."""
    import numpy as np
    import torch

    if "A" in picture.getbands() or (picture.mode == "P" and "transparency" in picture.info):
        alpha = np.asarray(picture.convert("RGBA").getchannel("A"), dtype=np.float32) / 255.0
        return torch.from_numpy(1.0 - alpha).unsqueeze(0)
    return torch.zeros(1, picture.height, picture.width)


@node(
    category="image",
    outputs={"image": Image, "mask": Mask},
    fingerprint=_file_hash,
    check=_check_load,
)
def LoadImage(ctx: Context, image: str = Input(widget="image_upload")) -> Any:
    """Load an image file (PNG, JPEG, WebP, ...) as an RGB image, and its alpha channel as a
    MASK (1 where transparent: what inpainting paints); every frame of an animated file whose
    size matches the first becomes one image of the batch. On the server, `image` names an
    uploaded file; on the command line, it is a path."""
    import torch
    from PIL import Image as PILImage
    from PIL import ImageOps, ImageSequence, UnidentifiedImageError

    path = resolve_input_image(ctx, image)
    try:
        with PILImage.open(path) as opened:
            # The header says how much decoding would allocate: refuse before decoding.
            problem = budget_of(ctx.services).problem(
                *opened.size, frames=getattr(opened, "n_frames", 1)
            )
            if problem:
                raise NodeError(f"{path.name}: {problem}", "image")
            frames: list[Any] = []
            masks: list[Any] = []
            for frame in ImageSequence.Iterator(opened):
                upright = ImageOps.exif_transpose(frame)
                tensor = image_to_tensor(upright)
                if frames and tensor.shape != frames[0].shape:
                    break
                frames.append(tensor)
                masks.append(alpha_mask(upright))
    except PILImage.DecompressionBombError as exc:
        raise NodeError(f"{path.name} is too large to load safely: {exc}", "image") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise NodeError(f"cannot read {path.name} as an image: {exc}", "image") from None
    return {"image": torch.cat(frames, dim=0), "mask": torch.cat(masks, dim=0)}


# -- writing PNGs ------------------------------------------------------------------------------
def tensor_to_pictures(image: Any) -> list[Any]:
    """Pillow images from an IMAGE tensor [B, C, H, W] in [0, 1] (C = 1, 3 or 4)."""
    import torch
    from PIL import Image as PILImage

    if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[1] not in (1, 3, 4):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise NodeError(
            f"expected an image tensor [batch, 1|3|4 channels, height, width], got {shape}", "image"
        )
    pixels = (image.detach().to("cpu", torch.float32).clamp(0, 1) * 255).round().to(torch.uint8)
    pictures = []
    for item in pixels.permute(0, 2, 3, 1).numpy():
        if item.shape[-1] == 1:
            pictures.append(PILImage.fromarray(item[..., 0], mode="L"))
        else:
            pictures.append(PILImage.fromarray(item, mode="RGBA" if item.shape[-1] == 4 else "RGB"))
    return pictures


def output_folder(ctx: Context, filename_prefix: str) -> tuple[Path, str]:
    """(folder, file stem) of a prefix such as "portraits/cat", kept inside the output folder."""
    prefix = filename_prefix.replace("\\", "/").strip()
    parts = PurePosixPath(prefix).parts
    if (
        not prefix
        or prefix.endswith("/")
        or PurePosixPath(prefix).is_absolute()
        or PureWindowsPath(filename_prefix).drive
        or ".." in parts
        or "\x00" in prefix
    ):
        raise NodeError(
            f"filename_prefix {filename_prefix!r} must be a file name, optionally "
            "in subfolders of the output folder, without '..'",
            "filename_prefix",
        )
    root = Path(ctx.output_dir).resolve()
    folder = root.joinpath(*parts[:-1]).resolve()
    if not folder.is_relative_to(root):
        raise NodeError(
            f"filename_prefix {filename_prefix!r} leads outside the output folder",
            "filename_prefix",
        )
    return folder, parts[-1]


def _check_prefix(ctx: Context, inputs: dict[str, Any]) -> list[tuple[str, str]]:
    if "filename_prefix" not in inputs:
        return []
    try:
        output_folder(ctx, inputs.get("filename_prefix", ""))
    except NodeError as exc:
        return [("filename_prefix", exc.message)]
    return []


def next_number(folder: Path, stem: str) -> int:
    """One more than the highest number among the files `stem_NNNNN.png` of the folder."""
    pattern = re.compile(re.escape(stem) + r"_(\d+)\.png$")
    highest = 0
    if folder.is_dir():
        for entry in os.scandir(folder):
            match = pattern.match(entry.name)
            if match:
                highest = max(highest, int(match.group(1)))
    return highest + 1


def write_png_atomically(
    picture: Any, folder: Path, stem: str, pnginfo: Any = None, start: int | None = None
) -> Path:
    """Write `stem_NNNNN.png` under the first free number: the PNG is complete in a temporary
    file first, then appears under its name in one step and never replaces an existing file,
    even with other processes writing to the same folder."""
    folder.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp", dir=folder)
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as file:
            picture.save(file, format="PNG", pnginfo=pnginfo, compress_level=4)
            file.flush()
            os.fsync(file.fileno())
        number = start if start is not None else next_number(folder, stem)
        while True:
            target = folder / f"{stem}_{number:0{DIGITS}d}.png"
            if _publish(temp, target):
                return target
            number += 1
    finally:
        temp.unlink(missing_ok=True)


def _publish(temp: Path, target: Path) -> bool:
    """Give the finished file its name unless the name is taken (False)."""
    try:
        os.link(temp, target)  # atomic and fails if the name exists
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links here (some network or FAT file systems)
        with _claim_lock:
            if target.exists():
                return False
            os.replace(temp, target)
            return True


def save_pictures(ctx: Context, image: Any, filename_prefix: str, pnginfo: Any = None) -> list[str]:
    """Save every image of the batch; returns the paths relative to the output folder."""
    folder, stem = output_folder(ctx, filename_prefix)
    root = Path(ctx.output_dir).resolve()
    files = []
    number = next_number(folder, stem)
    for picture in tensor_to_pictures(image):
        ctx.check_cancelled()
        path = write_png_atomically(picture, folder, stem, pnginfo, number)
        files.append(path.relative_to(root).as_posix())
        number = int(path.stem.rsplit("_", 1)[1]) + 1
    return files


# -- SaveImage / PreviewImage ------------------------------------------------------------------
@node(category="image", outputs={"image": Image}, output_node=True, check=_check_prefix)
def SaveImage(
    ctx: Context,
    image: Image,
    filename_prefix: str = Input(
        "easel", description="file name start; may contain subfolders, e.g. portraits/cat"
    ),
) -> dict[str, Any]:
    """Save images as PNG files in the output folder, numbered (prefix_00001.png, ...) without
    overwriting, with the workflow embedded so `easel run image.png` runs it again. `image`
    passes the images on (as ComfyUI's SaveImage does, to compare or stitch them)."""
    from easel.pngmeta import generation_summary, png_info

    workflow = ctx.services.get("workflow")
    summary = None
    if isinstance(workflow, dict):
        summary = generation_summary(workflow, ctx.node_id)
    info = png_info(workflow if isinstance(workflow, dict) else None, summary)
    return {"image": image, "ui": {"files": save_pictures(ctx, image, filename_prefix, info)}}


@node(category="image", outputs={"image": Image}, output_node=True)
def PreviewImage(ctx: Context, image: Image) -> dict[str, Any]:
    """Show images without keeping them: written to the output folder's preview/ subfolder;
    `image` passes them on."""
    return {"image": image, "ui": {"files": save_pictures(ctx, image, f"{PREVIEW_FOLDER}/preview")}}


NODES = [LoadImage, SaveImage, PreviewImage]
