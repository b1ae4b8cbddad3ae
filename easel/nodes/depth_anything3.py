"""Depth Anything 3 nodes (ComfyUI's LoadDA3Model, DA3Inference, DA3Render): a DA3 Mono/Metric-
Large file from `geometry_estimation/`, run on images, and its depth or sky map rendered.

DA3_GEOMETRY is a dict: "depth" [B, H, W] (the model's raw depth at the image's size), "sky"
[B, H, W] (sky probability, Mono/Metric models), "image" [B, 3, H, W] (the input), "mode"
("mono")."""

from __future__ import annotations

from typing import Annotated, Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Image, Socket
from easel.nodes.model_access import discovered, manager, model_errors

Da3Model = Annotated[Any, Socket("DA3_MODEL")]
Da3Geometry = Annotated[Any, Socket("DA3_GEOMETRY")]
RESIZE_METHODS = ["upper_bound_resize", "lower_bound_resize"]
DTYPES = ["default", "fp16", "bf16", "fp32"]
OUTPUTS = ["depth", "depth_colored", "sky_mask"]
NORMALIZATIONS = ["v2_style", "min_max", "raw"]
SKY_THRESHOLD = 0.3  # DA3's: sky probability at or above it is sky
LOW_QUANTILE, HIGH_QUANTILE = 0.01, 0.99


def _fingerprint(ctx: Context, inputs: dict[str, Any]) -> str:
    from easel.models import discovery

    models = ctx.services.get("models")
    try:
        path = discovery.resolve(
            "geometry_estimation", str(inputs.get("model_name", "")), models and models.roots
        )
    except Exception:
        return "missing"
    stat = path.stat()
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


@node(category="loaders", outputs={"da3_model": Da3Model}, fingerprint=_fingerprint)
def LoadDA3Model(
    ctx: Context,
    model_name: str = Input(choices=discovered("geometry_estimation")),
    weight_dtype: str = Input("default", choices=DTYPES),
) -> dict[str, Any]:
    """Load a Depth Anything 3 Mono-Large or Metric-Large file (`geometry_estimation/`).
    `weight_dtype` default runs float32."""
    from easel.models import depth_anything3

    with model_errors("model_name"):
        handle = depth_anything3.load(manager(ctx), model_name, weight_dtype)
    return {"da3_model": handle}


def target_size(height: int, width: int, resolution: int, method: str) -> tuple[int, int]:
    """(height, width) the model runs at: the longest (upper_bound_resize) or shortest
    (lower_bound_resize) side scaled to `resolution`, each side rounded to the nearest
    multiple of 14 (ties up), as DA3's preprocessing does."""
    side = max(height, width) if method == "upper_bound_resize" else min(height, width)
    scale = resolution / float(side)

    def to_patch(value: int) -> int:
        down = (value // 14) * 14
        up = down + 14
        return up if abs(up - value) <= abs(value - down) else down

    return (
        max(1, to_patch(round(height * scale))),
        max(1, to_patch(round(width * scale))),
    )


@node(category="image/geometry estimation", outputs={"da3_geometry": Da3Geometry})
def DA3Inference(
    ctx: Context,
    da3_model: Da3Model,
    image: Image,
    resolution: int = Input(504, ge=140, le=2520, step=14),
    resize_method: str = Input("upper_bound_resize", choices=RESIZE_METHODS),
    mode: str = Input("mono", choices=["mono"]),
) -> dict[str, Any]:
    """Depth (and sky) of each image: resized so its longest (or shortest) side is about
    `resolution` (Lanczos, sides multiples of 14), ImageNet-normalised, run, and the maps
    resized back (bilinear). `mode` mono treats each image on its own (multi-view needs DA3's
    any-view models, which Easel does not load)."""
    import torch
    import torch.nn.functional as F

    from easel.models import depth_anything3
    from easel.nodes.upscale import resample

    if image.ndim != 4 or image.shape[1] < 3:
        raise NodeError(f"expected RGB images [B, 3, H, W], got {tuple(image.shape)}", "image")
    rgb = image[:, :3].float().cpu()
    batch, _, height, width = rgb.shape
    size = target_size(height, width, resolution, resize_method)
    mean = torch.tensor(depth_anything3.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(depth_anything3.IMAGENET_STD).view(1, 3, 1, 1)
    depths, skies = [], []
    for index in range(batch):
        ctx.check_cancelled()
        single = rgb[index : index + 1]
        if size != (height, width):
            single = resample(single, size, "lanczos")
        pixels = (single.clamp(0, 1) - mean) / std
        with model_errors("da3_model"):
            depth, sky = depth_anything3.run(da3_model, pixels)
        depths.append(F.interpolate(depth[:, None], (height, width), mode="bilinear")[:, 0])
        if sky is not None:
            skies.append(F.interpolate(sky[:, None], (height, width), mode="bilinear")[:, 0])
        ctx.progress(index + 1, batch)
    geometry: dict[str, Any] = {"depth": torch.cat(depths), "image": rgb, "mode": mode}
    if skies:
        geometry["sky"] = torch.cat(skies)
    return {"da3_geometry": geometry}


def quantile(values: Any, q: float) -> Any:
    """torch.quantile (linear), over every value: sorted when there are more than
    torch.quantile takes."""
    import torch

    flat = values.flatten().double()
    if flat.numel() <= 16_000_000:
        return torch.quantile(flat, q).float()
    ordered = flat.sort().values
    position = q * (ordered.numel() - 1)
    low = int(position)
    high = min(low + 1, ordered.numel() - 1)
    return (ordered[low] + (ordered[high] - ordered[low]) * (position - low)).float()


def sky_clip(depth: Any, sky: Any) -> Any:
    """Sky pixels set to the 99th percentile of the other pixels' depth (unchanged when either
    part has 10 pixels or fewer)."""
    ground = sky < SKY_THRESHOLD
    if int(ground.sum()) <= 10 or int((~ground).sum()) <= 10:
        return depth.clone()
    out = depth.clone()
    out[~ground] = quantile(depth[ground], HIGH_QUANTILE)
    return out


def normalize_v2(depth: Any, sky: Any | None) -> Any:
    """Depth Anything V2's rendering: the 1st..99th percentiles (of non-sky pixels) to 1..0,
    near is white; sky is black."""
    import torch

    valid = depth.flatten()
    if sky is not None and bool((sky < SKY_THRESHOLD).any()):
        valid = depth[sky < SKY_THRESHOLD]
    low, high = quantile(valid, LOW_QUANTILE), quantile(valid, HIGH_QUANTILE)
    norm = 1.0 - ((depth - low) / (high - low).clamp(min=1e-6)).clamp(0.0, 1.0)
    if sky is not None:
        norm = torch.where(sky >= SKY_THRESHOLD, torch.zeros_like(norm), norm)
    return norm


def turbo(values: Any) -> Any:
    """[..., H, W] in 0..1 -> [..., 3, H, W]: Google's Turbo colormap (its published
    degree-5 polynomial fit)."""
    import torch

    x = values.clamp(0.0, 1.0)
    powers = torch.stack([x**k for k in range(6)], dim=-1)
    coefficients = torch.tensor(
        [
            [0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
            [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
            [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973],
        ],
        dtype=x.dtype,
    )
    rgb = (powers @ coefficients.T).clamp(0.0, 1.0)  # [..., H, W, 3]
    return rgb.movedim(-1, -3)


@node(category="image/geometry estimation", outputs={"image": Image})
def DA3Render(
    da3_geometry: Da3Geometry,
    output: str = Input("depth", choices=OUTPUTS),
    normalization: str = Input("v2_style", choices=NORMALIZATIONS),
    apply_sky_clip: bool = Input(False),
    colored: bool = Input(False),
) -> dict[str, Any]:
    """An image of DA3's geometry. depth: grey, near is bright, normalised per image by
    `normalization` (v2_style: the 1st..99th percentiles of non-sky depth, sky black; min_max:
    the full range; raw: the depth itself); depth_colored: the same through the Turbo colormap;
    sky_mask: the sky probability (`colored`: Turbo). `apply_sky_clip` first sets the sky's
    depth to the 99th percentile of the rest (needs a sky map)."""
    import torch

    if not isinstance(da3_geometry, dict) or "depth" not in da3_geometry:
        raise NodeError("not a DA3_GEOMETRY (DA3Inference's output)", "da3_geometry")
    sky = da3_geometry.get("sky")
    if output == "sky_mask":
        if sky is None:
            raise NodeError("this geometry has no sky map (Mono/Metric models have one)", "output")
        image = turbo(sky) if colored else sky[:, None].expand(-1, 3, -1, -1)
        return {"image": image.float().contiguous()}
    depth = da3_geometry["depth"].float()
    if apply_sky_clip:
        if sky is None:
            raise NodeError(
                "apply_sky_clip needs a sky map, which this geometry lacks", "apply_sky_clip"
            )
        depth = torch.stack([sky_clip(depth[i], sky[i]) for i in range(depth.shape[0])])
    if normalization == "v2_style":
        norm = torch.stack(
            [normalize_v2(depth[i], None if sky is None else sky[i]) for i in range(len(depth))]
        )
    elif normalization == "min_max":
        low = depth.amin(dim=(-2, -1), keepdim=True)
        high = depth.amax(dim=(-2, -1), keepdim=True)
        norm = 1.0 - ((depth - low) / (high - low).clamp(min=1e-6)).clamp(0.0, 1.0)
    else:
        norm = depth
    if output == "depth_colored":
        return {"image": turbo(norm).float().contiguous()}
    return {"image": norm[:, None].expand(-1, 3, -1, -1).float().contiguous()}


def _is_geometry(value: Any) -> bool:
    return isinstance(value, dict) and "depth" in value


SOCKET_TYPES = {
    "DA3_MODEL": ("a Depth Anything 3 model (LoadDA3Model)", lambda value: value is not None),
    "DA3_GEOMETRY": ("DA3's geometry: {'depth', 'sky', 'image', 'mode'}", _is_geometry),
}
NODES = [LoadDA3Model, DA3Inference, DA3Render]
