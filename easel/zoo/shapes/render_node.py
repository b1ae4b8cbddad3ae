"""RenderShapes: draws what a shapes caption describes, exactly (the demo model's ground truth).

It belongs to the demo model's family, so it lives in the zoo and comes through the zoo's own
built-in plugin (easel/zoo/plugin.py): the built-in nodes never import the zoo.
"""

from __future__ import annotations

import re
from typing import Any

from easel.core.node import Input, NodeError, node
from easel.core.types import Image


def parse_caption(text: str) -> Any:
    """A caption such as "a large red circle on the left on a white background" as a Scene."""
    from easel.zoo.shapes import data

    words = re.findall(r"[a-z]+", text.lower())
    background = data.DEFAULT_BACKGROUND
    if "background" in words:
        at = words.index("background")
        if at == 0 or words[at - 1] not in data.BACKGROUND_COLORS:
            names = ", ".join(data.BACKGROUND_NAMES)
            raise NodeError(f"name the background colour: one of {names}", "text")
        background = words[at - 1]
        words = words[: at - 1]
    objects = []
    for part in " ".join(words).split(" and "):
        tokens = part.split()
        colours = [t for t in tokens if t in data.OBJECT_COLORS]
        shapes = [t for t in tokens if t in data.SHAPES]
        sizes = [t for t in tokens if t in data.SIZES]
        positions = [t for t in tokens if t in data.POSITIONS]
        if len(colours) != 1 or len(shapes) != 1:
            raise NodeError(
                f"each object needs one colour ({', '.join(data.COLOR_NAMES)}) and one shape "
                f"({', '.join(data.SHAPES)}); could not read {part.strip()!r}",
                "text",
            )
        objects.append(
            data.ShapeObject(
                colours[0],
                shapes[0],
                sizes[0] if sizes else data.DEFAULT_SIZE,
                positions[0] if positions else data.DEFAULT_POSITION,
            )
        )
    if len(objects) > 2:
        raise NodeError("at most two objects", "text")
    if len(objects) == 2 and objects[0].position == objects[1].position:
        raise NodeError("two objects need different positions (left/right or top/bottom)", "text")
    return data.Scene(tuple(objects), background, text)


@node(category="image/generate", outputs={"image": Image})
def RenderShapes(
    text: str = Input("a large red circle on a white background", multiline=True),
    size: int = Input(32, ge=16, le=512, step=16),
) -> Any:
    """Draw the scene a shapes caption describes (colours, shapes, sizes, positions,
    background), exactly: the ground truth the demo model learns from."""
    import torch

    from easel.zoo.shapes import data

    pixels = data.render([parse_caption(text)], size=size, jitter=False)
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255.0)


NODES = [RenderShapes]
