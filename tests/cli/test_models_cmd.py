"""`easel models`: what was found, by kind, through the command line (a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED_CLIP = ROOT.parent / "shared" / "tokenizers" / "clip"


def easel(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "EASEL_CONFIG": str(tmp_path / "none.toml"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "EASEL_CACHE_DIR": str(tmp_path / "cache"),
    }
    env.pop("EASEL_MODELS_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "easel", "models", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )


def comfyui(tmp_path: Path) -> Path:
    """A ComfyUI install: models by kind (placeholders) and its CLIP tokenizer folder."""
    root = tmp_path / "ComfyUI"
    for rel, size in (
        ("checkpoints/sdxl/juggernaut.safetensors", 2048),
        ("checkpoints/v1-5-pruned-emaonly.ckpt", 10),
        ("loras/ink.safetensors", 5),
        ("vae/sdxl_vae.safetensors", 7),
        ("unet/flux-q4.gguf", 3),
        ("upscale_models/4x.pth", 1),
    ):
        path = root / "models" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * size)
    (root / "main.py").write_text("")
    tokenizer = root / "comfy" / "sd1_tokenizer"
    tokenizer.mkdir(parents=True)
    for name in ("vocab.json", "merges.txt"):
        (tokenizer / name).write_bytes((SHARED_CLIP / name).read_bytes())
    return root


def test_json_lists_each_kind_with_size_format_and_tokenizer_source(tmp_path: Path) -> None:
    root = comfyui(tmp_path)
    result = easel("--models-dir", str(root), "--json", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["roots"][0] == {"path": str(root), "exists": True}
    checkpoints = {row["name"]: row for row in report["kinds"]["checkpoints"]}
    assert checkpoints["sdxl/juggernaut.safetensors"]["size"] == 2048
    assert checkpoints["sdxl/juggernaut.safetensors"]["format"] == "safetensors"
    assert checkpoints["v1-5-pruned-emaonly.ckpt"]["format"] == "pickle"
    assert "easel-shapes" in checkpoints  # the bundled demo model is always there
    assert [r["name"] for r in report["kinds"]["loras"]] == ["ink.safetensors"]
    assert [(r["name"], r["format"]) for r in report["kinds"]["diffusion_models"]] == [
        ("flux-q4.gguf", "gguf")
    ]
    assert report["kinds"]["embeddings"] == []
    assert report["tokenizers"]["clip"]["path"] == str(root / "comfy" / "sd1_tokenizer")
    assert report["tokenizers"]["t5"] is None


def test_text_listing_groups_by_kind(tmp_path: Path) -> None:
    root = comfyui(tmp_path)
    yaml_file = tmp_path / "extra_model_paths.yaml"
    yaml_file.write_text(f"comfyui:\n  base_path: {root}\n  loras: models/loras\n")
    result = easel("--models-dir", str(yaml_file), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "loras (1):" in lines and "checkpoints (2):" in lines and "vae: none" in lines
    assert any(line.split() == ["ink.safetensors", "safetensors", "5", "B"] for line in lines)
    # the YAML points into a ComfyUI install, so its tokenizer folder is found too
    assert f"  CLIP: a ComfyUI install ({root / 'comfy' / 'sd1_tokenizer'})" in lines
    assert "  T5: not found (see docs/models.md, 'Tokenizers')" in lines


def test_an_unreadable_yaml_is_a_clear_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "extra_model_paths.yaml"
    bad.write_text("a111:\n  base_path: [oops\n")
    result = easel("--models-dir", str(bad), tmp_path=tmp_path)
    assert result.returncode == 2
    assert "cannot read the model paths file" in result.stderr and "Traceback" not in result.stderr


def test_listing_imports_neither_torch_nor_transformers(tmp_path: Path) -> None:
    root = comfyui(tmp_path)
    code = (
        "import sys, io, contextlib; from easel.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = main(['models', '--models-dir', {str(root)!r}])\n"
        "print(code, 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "EASEL_CONFIG": str(tmp_path / "none.toml"),
    }
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.stdout.split() == ["0", "False", "False"], result.stderr
