"""docs/comfyui.md lists exactly the ComfyUI node types the converter maps, to the right nodes."""

from __future__ import annotations

import re
from pathlib import Path

from easel.comfy.mapping import NODE_MAPS

DOC = Path(__file__).resolve().parents[2] / "docs" / "comfyui.md"


def test_mapping_table_matches_the_converter() -> None:
    rows = re.findall(r"^\| (\w+) \| (\w+) \|", DOC.read_text(encoding="utf-8"), re.MULTILINE)
    documented = {comfy: easel for comfy, easel in rows if comfy != "ComfyUI"}
    assert documented == {name: spec.easel_type for name, spec in NODE_MAPS.items()}
