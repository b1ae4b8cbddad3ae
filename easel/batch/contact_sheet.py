"""A contact sheet: every item's first image, labelled with its parameters and scores."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from easel.core.status import RunStatus

THUMB = 192
LABEL_LINES = 3
LINE_HEIGHT = 14
PAD = 8


def _label(result: dict[str, Any]) -> list[str]:
    parts = [f"{k.split('.')[-1]}={v}" for k, v in result.get("params", {}).items()]
    for name, value in result.get("scores", {}).items():
        shown = value if not isinstance(value, list) else value[0] if len(value) == 1 else value
        if isinstance(shown, float):
            shown = f"{shown:.1f}"
        parts.append(f"{name.split('.')[-1]} {shown}")
    if result.get("status") != RunStatus.SUCCEEDED:
        parts.append(str(result.get("status", RunStatus.FAILED)).upper())
    lines = textwrap.wrap(", ".join(parts), width=30) or [""]
    return lines[:LABEL_LINES]


def write_contact_sheet(results: list[dict[str, Any]], path: Path, columns: int = 0) -> Path:
    count = max(1, len(results))
    columns = columns or min(count, max(1, round(count**0.5 + 0.5)))
    rows = -(-count // columns)
    cell_w, cell_h = THUMB + PAD, THUMB + PAD + LABEL_LINES * LINE_HEIGHT + PAD
    sheet = Image.new("RGB", (columns * cell_w + PAD, rows * cell_h + PAD), (24, 26, 31))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=12)
    for n, result in enumerate(results):
        x = PAD + (n % columns) * cell_w
        y = PAD + (n // columns) * cell_h
        image_file = next((f for f in result.get("files", []) if f.lower().endswith(".png")), None)
        if image_file and Path(image_file).is_file():
            with Image.open(image_file) as image:
                thumb = image.convert("RGB")
                thumb.thumbnail(
                    (THUMB, THUMB),
                    Image.Resampling.NEAREST
                    if max(image.size) <= THUMB // 2
                    else Image.Resampling.LANCZOS,
                )
                scale = THUMB / max(thumb.size)
                if scale > 1:
                    thumb = thumb.resize(
                        (round(thumb.width * scale), round(thumb.height * scale)),
                        Image.Resampling.NEAREST,
                    )
            sheet.paste(thumb, (x + (THUMB - thumb.width) // 2, y + (THUMB - thumb.height) // 2))
        else:
            draw.rectangle((x, y, x + THUMB - 1, y + THUMB - 1), outline=(120, 50, 50), width=2)
            draw.text((x + 10, y + THUMB // 2 - 6), "no image", fill=(200, 90, 90), font=font)
        for line_number, line in enumerate(_label(result)):
            draw.text(
                (x, y + THUMB + 4 + line_number * LINE_HEIGHT),
                line,
                fill=(225, 228, 235),
                font=font,
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
