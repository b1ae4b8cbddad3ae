"""Deterministic pixel analyser: reads colour, shape, size, position and background from images.

It is the evaluation oracle for generated images, so every step tolerates blur and noise:
each pixel is explained as a blend of the background and one named object colour (so the
anti-aliased or blurred edge of a red shape on white counts as red, not as orange), objects
are connected components of pixels that are mostly object, and shape is the template
(circle, square, triangle) that best matches the object's soft mask when placed by the
object's mass and centroid, which are exact to a fraction of a pixel even for small shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from easel.zoo.shapes.data import (
    BACKGROUND_COLORS,
    BACKGROUND_NAMES,
    COLOR_NAMES,
    OBJECT_COLORS,
    POSITION_NAMES,
    POSITIONS,
    SHAPES,
    Scene,
    shape_coverage,
)

_OBJECT_RGB = np.array([OBJECT_COLORS[c] for c in COLOR_NAMES], np.float32)
_BACKGROUND_RGB = np.array([BACKGROUND_COLORS[c] for c in BACKGROUND_NAMES], np.float32)
_ANCHORS = np.array([POSITIONS[p] for p in POSITION_NAMES], np.float32)

MIN_AREA_FRACTION = 0.012  # smaller components are specks, not objects
SIZE_THRESHOLD = 0.30  # fitted side / image side: small ~0.22, large ~0.38


@dataclass(frozen=True)
class DetectedObject:
    """An object found in an image, with the features its labels were read from."""

    color: str
    shape: str
    size: str
    position: str
    area: float  # fraction of the image
    fit_error: float  # L1 distance to the best shape template, per unit of object area
    extent: float  # side of the fitted shape / image side


@dataclass(frozen=True)
class Analysis:
    """What an image shows: its background and its objects, largest first."""

    background: str
    objects: tuple[DetectedObject, ...]


def analyse(images: np.ndarray) -> list[Analysis]:
    """Analyse a batch of RGB images (N x H x W x 3, uint8 or float in 0..255)."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected N x H x W x 3 RGB images, got shape {images.shape}")
    pix = images.astype(np.float32)
    bg_idx = _backgrounds(pix)
    bg_rgb = _BACKGROUND_RGB[bg_idx][:, None, None, :]
    alpha, label = _blend_decomposition(pix, bg_rgb)
    best_alpha = np.take_along_axis(alpha, label[..., None], axis=-1)[..., 0]
    foreground = best_alpha >= 0.5
    components = connected_components(foreground)
    return [
        Analysis(BACKGROUND_NAMES[bg_idx[i]], _objects(alpha[i], label[i], components[i]))
        for i in range(len(pix))
    ]


def _backgrounds(pix: np.ndarray) -> np.ndarray:
    """Background index per image: the most common nearest background colour on the border."""
    border = np.concatenate(
        [pix[:, 0, :], pix[:, -1, :], pix[:, 1:-1, 0], pix[:, 1:-1, -1]], axis=1
    )
    dist = ((border[:, :, None, :] - _BACKGROUND_RGB[None, None]) ** 2).sum(-1)
    nearest = dist.argmin(-1)
    counts = np.stack([(nearest == k).sum(1) for k in range(len(_BACKGROUND_RGB))], axis=1)
    return counts.argmax(1)


def _blend_decomposition(pix: np.ndarray, bg_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: the object colour whose blend line with the background fits best, and alpha.

    Returns alpha (N x H x W x C, coverage of each colour) and label (N x H x W, best colour).
    """
    direction = _OBJECT_RGB[None, None, None] - bg_rgb[..., None, :]  # N,1,1,C,3
    offset = (pix - bg_rgb)[..., None, :]  # N,H,W,1,3
    norm2 = np.maximum((direction**2).sum(-1), 1.0)
    alpha = np.clip((offset * direction).sum(-1) / norm2, 0.0, 1.0)  # N,H,W,C
    residual = ((offset - alpha[..., None] * direction) ** 2).sum(-1)
    label = residual.argmin(-1)
    return alpha, label


def connected_components(mask: np.ndarray) -> np.ndarray:
    """4-connected component labels of a boolean batch (N x H x W); 0 is background.

    Vectorised label propagation: every foreground pixel takes the minimum label of its
    neighbours until nothing changes.
    """
    _, h, w = mask.shape
    big = np.int64(h * w + 1)
    labels = np.where(mask, np.arange(1, h * w + 1, dtype=np.int64).reshape(1, h, w), big)
    while True:
        padded = np.pad(labels, ((0, 0), (1, 1), (1, 1)), constant_values=big)
        neighbours = np.minimum(
            np.minimum(padded[:, :-2, 1:-1], padded[:, 2:, 1:-1]),
            np.minimum(padded[:, 1:-1, :-2], padded[:, 1:-1, 2:]),
        )
        updated = np.where(mask, np.minimum(labels, neighbours), big)
        if np.array_equal(updated, labels):
            break
        labels = updated
    return np.where(mask, labels, 0)


def _objects(
    alpha: np.ndarray, label: np.ndarray, components: np.ndarray
) -> tuple[DetectedObject, ...]:
    h, w = components.shape
    min_area = MIN_AREA_FRACTION * h * w
    ids, counts = np.unique(components[components > 0], return_counts=True)
    best_alpha = np.take_along_axis(alpha, label[..., None], axis=-1)[..., 0]
    found = []
    for comp, count in zip(ids, counts, strict=True):
        if count < min_area:
            continue
        member = components == comp
        colors, color_counts = np.unique(label[member], return_counts=True)
        order = np.argsort(-color_counts, kind="stable")
        parts = [int(colors[order[0]])]
        # Two touching objects of different colours form one component: split it by colour.
        if len(order) > 1 and color_counts[order[1]] >= max(0.3 * count, min_area):
            parts.append(int(colors[order[1]]))
        for color in parts:
            region = member & (label == color) if len(parts) > 1 else member
            # The object's soft edge: neighbours of the region that are mostly background.
            support = region | (_dilate(region) & ((label == color) | (best_alpha < 0.5)))
            found.append(_describe(np.where(support, alpha[..., color], 0.0), color))
    found.sort(key=lambda o: -o.area)
    return tuple(found)


def _dilate(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1)
    return (
        mask
        | padded[:-2, 1:-1]
        | padded[2:, 1:-1]
        | padded[1:-1, :-2]
        | padded[1:-1, 2:]
        | padded[:-2, :-2]
        | padded[:-2, 2:]
        | padded[2:, :-2]
        | padded[2:, 2:]
    )


# Area of each shape (SHAPES order) per squared half side; triangles' centroids sit h/3 below
# their bounding-box centre.
_AREA_PER_HALF2 = {"circle": np.pi, "square": 4.0, "triangle": 2.0}
_CENTROID_DROP = {"circle": 0.0, "square": 0.0, "triangle": 1.0 / 3.0}


def _describe(weights: np.ndarray, color: int) -> DetectedObject:
    """Fit each shape template with the object's mass and centroid; keep the closest one."""
    h, w = weights.shape
    mass = float(weights.sum())
    grid_y, grid_x = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    cy = float((weights * grid_y).sum() / mass)
    cx = float((weights * grid_x).sum() / mass)
    ys, xs = np.nonzero(weights > 0)
    y0, y1 = max(int(ys.min()) - 2, 0), min(int(ys.max()) + 3, h)
    x0, x1 = max(int(xs.min()) - 2, 0), min(int(xs.max()) + 3, w)
    crop = weights[y0:y1, x0:x1]
    halves = np.array([np.sqrt(mass / _AREA_PER_HALF2[s]) for s in SHAPES], np.float32)
    centres_y = np.array(
        [cy - _CENTROID_DROP[s] * hf for s, hf in zip(SHAPES, halves, strict=True)]
    )
    templates = shape_coverage(
        np.arange(len(SHAPES)),
        np.full(len(SHAPES), cx),
        centres_y,
        halves,
        y1 - y0,
        x1 - x0,
        supersample=4,
        y0=y0,
        x0=x0,
        scale=1.0,
    )
    errors = np.abs(templates - crop[None]).sum(axis=(1, 2)) / mass
    best = int(errors.argmin())
    half = float(halves[best])
    extent = 2 * half / max(h, w)
    centre = np.array([cx / w, centres_y[best] / h], np.float32)
    position = POSITION_NAMES[int(((_ANCHORS - centre) ** 2).sum(1).argmin())]
    return DetectedObject(
        color=COLOR_NAMES[color],
        shape=SHAPES[best],
        size="large" if extent > SIZE_THRESHOLD else "small",
        position=position,
        area=mass / (h * w),
        fit_error=float(errors[best]),
        extent=extent,
    )


ATTRIBUTES = ("color", "shape", "size", "position", "background")


def score(analysis: Analysis, scene: Scene) -> dict[str, bool]:
    """Per attribute, whether the image shows what the scene asks for (all objects must match).

    Objects are matched to the scene's objects by position, then by colour; a missing object
    fails every object attribute, and an image must show exactly as many objects as asked.
    """
    result = {name: True for name in ATTRIBUTES}
    result["background"] = analysis.background == scene.background
    detected = list(analysis.objects[: len(scene.objects)])
    if len(analysis.objects) != len(scene.objects):
        result["count"] = False
    else:
        result["count"] = True
    for want in scene.objects:
        match = next((d for d in detected if d.position == want.position), None)
        if match is None:
            match = next((d for d in detected if d.color == want.color), None)
        if match is None:
            for name in ("color", "shape", "size", "position"):
                result[name] = False
            continue
        detected.remove(match)
        result["color"] &= match.color == want.color
        result["shape"] &= match.shape == want.shape
        result["size"] &= match.size == want.size
        result["position"] &= match.position == want.position
    result["all"] = all(result[name] for name in (*ATTRIBUTES, "count"))
    return result
