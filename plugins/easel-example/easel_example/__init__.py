"""An example Easel plugin: colour palettes, posterize and prompt templates."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import easel
from easel.core.types import Image

__version__ = "0.2.0"

Palette_ = easel.socket_type("PALETTE")


def _parse_colors(text: str) -> list[tuple[int, int, int]]:
    from PIL import ImageColor

    colors = []
    for item in text.replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        parts = item.split()
        try:
            if len(parts) == 3:
                r, g, b = (int(p) for p in parts)
                if not all(0 <= c <= 255 for c in (r, g, b)):
                    raise ValueError
                colors.append((r, g, b))
            else:
                colors.append(ImageColor.getrgb(item)[:3])
        except ValueError:
            raise easel.NodeError(
                f"cannot read colour {item!r}: use a name (navy), #rrggbb or 'R G B'", "colors"
            ) from None
    if not colors:
        raise easel.NodeError("give at least one colour", "colors")
    return colors


@easel.node(category="image/color", outputs={"palette": Palette_})
def Palette(
    colors: str = easel.Input(
        "black, white, #e63946, #457b9d, #f1c40f", multiline=True, widget="palette"
    ),
) -> Any:
    """A palette from colour names, #rrggbb or 'R G B' triples, comma separated."""
    return _parse_colors(colors)


@easel.node(category="image/color", outputs={"image": Image})
def ApplyPalette(image: Image, palette: Palette_) -> Any:
    """Map every pixel to the nearest colour of the palette."""
    import torch

    colors = torch.tensor(palette, dtype=image.dtype) / 255.0  # [K, 3]
    pixels = image.permute(0, 2, 3, 1)[..., :3]  # [B, H, W, 3]
    distance = ((pixels.unsqueeze(-2) - colors) ** 2).sum(-1)  # [B, H, W, K]
    nearest = colors[distance.argmin(-1)]
    return nearest.permute(0, 3, 1, 2).contiguous()


@easel.node(category="image/color", outputs={"image": Image})
def Posterize(image: Image, levels: int = easel.Input(4, ge=2, le=64)) -> Any:
    """Reduce every channel to a few levels."""
    return (image * (levels - 1)).round() / (levels - 1)


@easel.node(category="text", outputs={"text": str})
def PromptTemplate(
    template: str = easel.Input("a {style} picture of {subject}", multiline=True),
    subject: str = "a red circle",
    style: str = "simple",
) -> str:
    """Fill {subject} and {style} in a prompt template."""
    try:
        return template.format(subject=subject, style=style)
    except (KeyError, IndexError, ValueError) as exc:
        raise easel.NodeError(
            f"bad placeholder {exc}: use {{subject}} and {{style}}", "template"
        ) from None


@easel.hookimpl
def register_socket_types(register: Callable[[str, str], None]) -> None:
    register("PALETTE", "a list of RGB colours")


@easel.hookimpl
def register_nodes(register: Callable[[Any], None]) -> None:
    for node_type in (Palette, ApplyPalette, Posterize, PromptTemplate):
        register(node_type)


@easel.hookimpl
def register_web_assets(register: Callable[[Path], None]) -> None:
    register(Path(__file__).parent / "web")
