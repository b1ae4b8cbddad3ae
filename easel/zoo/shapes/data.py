"""Seeded, vectorised generator of captioned shape images (the easel-shapes training data)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# Named colours: well separated in RGB so that blur and noise cannot move a pixel to a neighbour.
OBJECT_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (40, 70, 230),
    "yellow": (245, 215, 30),
    "purple": (150, 50, 200),
    "orange": (250, 130, 20),
}
BACKGROUND_COLORS: dict[str, tuple[int, int, int]] = {
    "white": (250, 250, 250),
    "black": (10, 10, 10),
    "gray": (128, 128, 128),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIZES: tuple[str, ...] = ("small", "large")
# Five anchors, as fractions of the image side: a 3x3 grid's middle row and column.
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (0.25, 0.5),
    "right": (0.75, 0.5),
    "top": (0.5, 0.25),
    "bottom": (0.5, 0.75),
    "center": (0.5, 0.5),
}
POSITION_PHRASES: dict[str, str] = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}
# Half the side of an object's bounding box, as a fraction of the image side.
SIZE_HALF: dict[str, float] = {"small": 0.11, "large": 0.19}
# Two-object scenes use opposite anchors so that objects never overlap.
PAIR_POSITIONS: tuple[tuple[str, str], ...] = (("left", "right"), ("top", "bottom"))

# Values used when a caption leaves the word out (the model learns these defaults).
DEFAULT_SIZE = "large"
DEFAULT_POSITION = "center"
DEFAULT_BACKGROUND = "white"

# (colour, shape, position) triples never drawn in training, kept for evaluation. Every pair of
# attributes inside them still occurs in training, so they test composition, not new words.
HELD_OUT: tuple[tuple[str, str, str], ...] = (
    ("red", "triangle", "top"),
    ("red", "square", "right"),
    ("green", "square", "left"),
    ("green", "circle", "bottom"),
    ("blue", "circle", "right"),
    ("blue", "triangle", "left"),
    ("yellow", "triangle", "center"),
    ("yellow", "circle", "left"),
    ("purple", "square", "bottom"),
    ("purple", "triangle", "right"),
    ("orange", "circle", "top"),
    ("orange", "square", "center"),
)

COLOR_NAMES = tuple(OBJECT_COLORS)
BACKGROUND_NAMES = tuple(BACKGROUND_COLORS)
POSITION_NAMES = tuple(POSITIONS)


@dataclass(frozen=True)
class ShapeObject:
    """One object of a scene."""

    color: str
    shape: str
    size: str
    position: str


@dataclass(frozen=True)
class Scene:
    """A scene: its objects, background and the caption describing them."""

    objects: tuple[ShapeObject, ...]
    background: str
    caption: str


@dataclass(frozen=True)
class Batch:
    """Rendered images (uint8, N x H x W x 3) and their scenes."""

    images: np.ndarray
    scenes: list[Scene]

    @property
    def captions(self) -> list[str]:
        return [s.caption for s in self.scenes]


@dataclass(frozen=True)
class SceneConfig:
    """Probabilities of scene variants; defaults are the training distribution."""

    two_object_prob: float = 0.25
    drop_size_prob: float = 0.15
    drop_position_prob: float = 0.15
    drop_background_prob: float = 0.25
    held_out: str = "exclude"  # "exclude" (training), "only" (evaluation) or "allow"


def is_held_out(color: str, shape: str, position: str) -> bool:
    """Whether an object's (colour, shape, position) is in the held-out evaluation list."""
    return (color, shape, position) in _HELD_OUT_SET


_HELD_OUT_SET = frozenset(HELD_OUT)


def caption_for(
    objects: tuple[ShapeObject, ...],
    background: str | None,
    show_size: bool = True,
    show_position: bool = True,
) -> str:
    """The plain-English caption of a scene; a None background leaves the background unsaid."""
    phrases = []
    for obj in objects:
        words = ["a"]
        if show_size:
            words.append(obj.size)
        words += [obj.color, obj.shape]
        if show_position:
            words.append(POSITION_PHRASES[obj.position])
        phrases.append(" ".join(words))
    text = " and ".join(phrases)
    if background is not None:
        text += f" on a {background} background"
    return text


def sample_scenes(
    rng: np.random.Generator, n: int, config: SceneConfig | None = None
) -> list[Scene]:
    """Draw n scenes from the distribution described by config."""
    config = config or SceneConfig()
    scenes: list[Any] = []
    while len(scenes) < n:
        scene = _sample_scene(rng, config)
        if scene is not None:
            scenes.append(scene)
    return scenes


def _sample_scene(rng: np.random.Generator, config: SceneConfig) -> Scene | None:
    two = rng.random() < config.two_object_prob
    background = BACKGROUND_NAMES[rng.integers(len(BACKGROUND_NAMES))]
    drop_background = rng.random() < config.drop_background_prob
    if drop_background:
        background = DEFAULT_BACKGROUND
    if two:
        pair = PAIR_POSITIONS[rng.integers(len(PAIR_POSITIONS))]
        if rng.random() < 0.5:
            pair = (pair[1], pair[0])
        colors = rng.choice(len(COLOR_NAMES), size=2, replace=False)
        drop_size = rng.random() < config.drop_size_prob
        objects = tuple(
            ShapeObject(
                COLOR_NAMES[colors[i]],
                SHAPES[rng.integers(len(SHAPES))],
                DEFAULT_SIZE if drop_size else SIZES[rng.integers(len(SIZES))],
                pair[i],
            )
            for i in range(2)
        )
        show_position = True
    else:
        drop_size = rng.random() < config.drop_size_prob
        drop_position = rng.random() < config.drop_position_prob
        objects = (
            ShapeObject(
                COLOR_NAMES[rng.integers(len(COLOR_NAMES))],
                SHAPES[rng.integers(len(SHAPES))],
                DEFAULT_SIZE if drop_size else SIZES[rng.integers(len(SIZES))],
                DEFAULT_POSITION
                if drop_position
                else POSITION_NAMES[rng.integers(len(POSITION_NAMES))],
            ),
        )
        show_position = not drop_position
    held = [is_held_out(o.color, o.shape, o.position) for o in objects]
    if config.held_out == "exclude" and any(held):
        return None
    if config.held_out == "only" and not any(held):
        return None
    caption = caption_for(
        objects, None if drop_background else background, not drop_size, show_position
    )
    return Scene(objects, background, caption)


def render(
    scenes: list[Scene],
    size: int = 32,
    rng: np.random.Generator | None = None,
    jitter: bool = True,
    supersample: int = 4,
) -> np.ndarray:
    """Render scenes to uint8 images (N x size x size x 3), anti-aliased by supersampling.

    With jitter (needs rng) each object's centre moves by up to 0.75/32 of the side and its size
    by up to 6%, so the model sees variety; the analyser's thresholds leave room for both.
    """
    n = len(scenes)
    img = np.empty((n, size, size, 3), np.float32)
    bg = np.array([BACKGROUND_COLORS[s.background] for s in scenes], np.float32)
    img[:] = bg[:, None, None, :]
    max_objects = max(len(s.objects) for s in scenes)
    for slot in range(max_objects):
        idx = np.array([i for i, s in enumerate(scenes) if len(s.objects) > slot])
        objs = [scenes[i].objects[slot] for i in idx]
        cx = np.array([POSITIONS[o.position][0] for o in objs], np.float32)
        cy = np.array([POSITIONS[o.position][1] for o in objs], np.float32)
        half = np.array([SIZE_HALF[o.size] for o in objs], np.float32)
        if jitter:
            if rng is None:
                raise ValueError("render(jitter=True) needs an rng")
            cx = cx + (rng.uniform(-0.75, 0.75, len(objs)) / 32).astype(np.float32)
            cy = cy + (rng.uniform(-0.75, 0.75, len(objs)) / 32).astype(np.float32)
            half = half * rng.uniform(0.94, 1.06, len(objs)).astype(np.float32)
        shape_id = np.array([SHAPES.index(o.shape) for o in objs])
        cover = shape_coverage(shape_id, cx, cy, half, size, size, supersample)
        color = np.array([OBJECT_COLORS[o.color] for o in objs], np.float32)[:, None, None, :]
        cover = cover[..., None].astype(np.float32)
        img[idx] = img[idx] * (1 - cover) + color * cover
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def shape_coverage(
    shape_id: np.ndarray,
    cx: np.ndarray,
    cy: np.ndarray,
    half: np.ndarray,
    height: int,
    width: int,
    supersample: int = 4,
    y0: float = 0.0,
    x0: float = 0.0,
    scale: float | None = None,
) -> np.ndarray:
    """Fraction of each pixel covered by each shape (K x height x width), by supersampling.

    Shape k has index shape_id[k] into SHAPES, centre (cx, cy) and half side `half`, all in
    units of `scale` pixels (default: the image side, i.e. fractions of it); the window's
    top-left pixel is (y0, x0) in pixels. Triangles point up and fill their bounding box.
    """
    scale = float(max(height, width)) if scale is None else scale
    sub = (np.arange(supersample, dtype=np.float32) + 0.5) / supersample
    ys = ((y0 + np.arange(height, dtype=np.float32)[:, None] + sub[None, :]).reshape(-1)) / scale
    xs = ((x0 + np.arange(width, dtype=np.float32)[:, None] + sub[None, :]).reshape(-1)) / scale
    shape_id = np.asarray(shape_id)[:, None, None]
    cx, cy, half = (np.asarray(v, np.float32)[:, None, None] for v in (cx, cy, half))
    dx, dy = xs[None, None, :] - cx, ys[None, :, None] - cy
    circle = dx * dx + dy * dy <= half * half
    square = (np.abs(dx) <= half) & (np.abs(dy) <= half)
    # Upward-pointing isosceles triangle filling its bounding box: apex at the top centre.
    triangle = (np.abs(dy) <= half) & (np.abs(dx) <= (dy + half) / 2)
    mask = np.where(shape_id == 0, circle, np.where(shape_id == 1, square, triangle))
    k = mask.shape[0]
    cover = mask.reshape(k, height, supersample, width, supersample).mean(axis=(2, 4))
    return cover.astype(np.float32)


def make_batch(
    seed: int, n: int, size: int = 32, config: SceneConfig | None = None, jitter: bool = True
) -> Batch:
    """A batch fully determined by (seed, n, size, config): same arguments, same pixels."""
    rng = np.random.default_rng(seed)
    scenes = sample_scenes(rng, n, config)
    return Batch(render(scenes, size, rng, jitter=jitter), scenes)


def step_seed(seed: int, stage: str, step: int) -> int:
    """A per-step data seed, stable across processes, so a resumed run sees the same batches."""
    digest = sum((i + 1) * ord(c) for i, c in enumerate(stage))
    return (seed * 1_000_003 + digest * 7919 + step) % (2**63)


def all_captions() -> list[str]:
    """Every caption the generator can write (used to train the tokenizer)."""
    captions: set[str] = set()
    backgrounds: list[str | None] = [None, *BACKGROUND_NAMES]
    for color in COLOR_NAMES:
        for shape in SHAPES:
            for size in SIZES:
                for pos in POSITION_NAMES:
                    obj = (ShapeObject(color, shape, size, pos),)
                    for bg in backgrounds:
                        for show_size in (True, False):
                            for show_pos in (True, False):
                                captions.add(caption_for(obj, bg, show_size, show_pos))
    return sorted(captions)
