"""The example plugin, installed as its own distribution, seen and run by Easel."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from easel.core.context import Context
from easel.core.plugins import load_plugins

HERE = Path(__file__).resolve().parent.parent


def easel_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "easel", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_installed_entry_point_registers_nodes_and_socket_type():
    registry = load_plugins(environ={})
    info = registry.plugins["example"]
    assert info.ok, info.errors
    assert info.version == "0.2.0"
    assert sorted(info.nodes) == ["ApplyPalette", "Palette", "Posterize", "PromptTemplate"]
    assert registry.socket_types["PALETTE"] == "a list of RGB colours"
    assert info.web_assets is not None and (info.web_assets / "index.js").is_file()


def test_apply_palette_maps_to_nearest_colour():
    registry = load_plugins(environ={})
    image = torch.tensor([[[0.9], [0.1]], [[0.1], [0.2]], [[0.1], [0.8]]]).reshape(1, 3, 1, 2)
    palette = registry.nodes["Palette"].call(Context(), {"colors": "red, blue"})["palette"]
    out = registry.nodes["ApplyPalette"].call(Context(), {"image": image, "palette": palette})
    assert out["image"][0, :, 0, 0].tolist() == [1.0, 0.0, 0.0]
    assert out["image"][0, :, 0, 1].tolist() == [0.0, 0.0, 1.0]


def test_bad_colour_is_a_node_error_naming_the_input():
    import easel

    registry = load_plugins(environ={})
    with pytest.raises(easel.NodeError) as info:
        registry.nodes["Palette"].call(Context(), {"colors": "red, notacolour"})
    assert info.value.input == "colors" and "notacolour" in info.value.message


def test_plugins_command_lists_it(tmp_path):
    result = easel_cli("plugins", cwd=tmp_path)
    assert result.returncode == 0
    line = next(line for line in result.stdout.splitlines() if line.startswith("example"))
    assert "0.2.0" in line and " 4 " in line


def test_end_to_end_run_through_the_cli(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    workflow = HERE / "workflows" / "palette.json"
    result = easel_cli(
        "run",
        str(workflow),
        "--set",
        f"load.image={tmp_path / 'in.png'}",
        "--output-dir",
        str(tmp_path / "out"),
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    [written] = report["files"]
    pixels = np.asarray(Image.open(written).convert("RGB")).reshape(-1, 3)
    allowed = {(0, 0, 0), (255, 255, 255), (0xE6, 0x39, 0x46), (0x45, 0x7B, 0x9D)}
    assert {tuple(p) for p in pixels} <= allowed
    assert len({tuple(p) for p in pixels}) >= 3
