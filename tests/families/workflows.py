"""Workflow builders for the family tests."""

from __future__ import annotations

from typing import Any

SIZE = 64  # pixels; latents 8x8 (VAE factor 8)


def txt2img(
    ckpt: str,
    prompt: str = "a red circle",
    negative: str = "blue",
    *,
    seed: int = 42,
    steps: int = 3,
    cfg: float = 5.0,
    size: int = SIZE,
    sampler_name: str = "euler",
) -> dict[str, Any]:
    """CheckpointLoader -> TextEncode x2 -> EmptyLatent -> KSampler -> VAEDecode."""
    return {
        "ckpt": {"type": "CheckpointLoader", "inputs": {"name": ckpt}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": prompt}},
        "neg": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": negative}},
        "lat": {
            "type": "EmptyLatent",
            "inputs": {"width": size, "height": size, "vae": ["ckpt", "vae"]},
        },
        "k": {
            "type": "KSampler",
            "inputs": {
                "model": ["ckpt", "model"],
                "positive": ["pos", "conditioning"],
                "negative": ["neg", "conditioning"],
                "latent": ["lat", "latent"],
                "seed": seed,
                "steps": steps,
                "cfg": cfg,
                "sampler_name": sampler_name,
                "scheduler": "normal",
            },
        },
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["ckpt", "vae"], "latent": ["k", "latent"]}},
    }


def image_of(result: Any, node: str = "dec") -> Any:
    assert result.status == "succeeded", result.failures
    return result.values[node]["image"]


def as_tensor(images: Any) -> Any:
    """diffusers' numpy output [B, H, W, C] as Easel's [B, C, H, W] tensor."""
    import torch

    return torch.from_numpy(images).permute(0, 3, 1, 2)


TEMPLATES_PACKAGE = "comfyui_workflow_templates_json"  # ComfyUI's corpus (the dev extra)


def template(name: str) -> dict[str, Any]:
    """ComfyUI's official template `name` from the installed corpus package."""
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.find_spec(TEMPLATES_PACKAGE)
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / "templates" / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def only(nodes: dict[str, Any], kind: str) -> str:
    """The id of the one node of type `kind` in a workflow's nodes."""
    [found] = [node_id for node_id, node in nodes.items() if node["type"] == kind]
    return found


def stage_template_files(
    source: Any, files: dict[str, str], root: Any, monkeypatch: Any = None
) -> list[Any]:
    """A ComfyUI install at `root` holding a family fixture's tiny models (`source`: its root)
    under the file names a template loads (`files`: "<kind>/<name>" -> the fixture's file),
    with the fixture's ComfyUI tokenizer folders; returns the model roots (and points
    EASEL_MODELS_DIR at them when given `monkeypatch`)."""
    import os
    import shutil

    for name, file in files.items():
        target = root / "models" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / "models" / file, target)
    shutil.copytree(source / "ComfyUI", root / "ComfyUI")
    roots = [root / "models", root / "ComfyUI"]
    if monkeypatch is not None:
        monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    return roots


def run_for_image(workflow: dict[str, Any], roots: list[Any], out_dir: Any) -> Any:
    """Run `workflow` on the CPU in fp32 with its models under `roots`: the one image it saves,
    read back as a [1, 3, H, W] tensor in [0, 1]."""
    import numpy as np
    import torch
    from PIL import Image as PILImage

    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=out_dir)
    assert result.ok, result.failures
    [saved] = [f for entry in result.ui.values() for f in entry.get("files", [])]
    pixels = np.asarray(PILImage.open(out_dir / saved).convert("RGB"))
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255


def custom_sampling(nodes: dict[str, Any], cfg: float, steps: int = 3) -> dict[str, Any]:
    """A split-file workflow's KSampler `k` (euler / simple, seed 42) redone with ComfyUI's
    custom sampling: RandomNoise, CFGGuider, KSamplerSelect, BasicScheduler and
    SamplerCustomAdvanced, decoded by `dec` as before."""
    custom = {name: spec for name, spec in nodes.items() if name != "k"}
    custom.update(
        noise={"type": "RandomNoise", "inputs": {"noise_seed": 42}},
        guider={
            "type": "CFGGuider",
            "inputs": {
                "model": ["unet", "model"],
                "positive": ["pos", "conditioning"],
                "negative": ["neg", "conditioning"],
                "cfg": cfg,
            },
        },
        sampler={"type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        sigmas={
            "type": "BasicScheduler",
            "inputs": {"model": ["unet", "model"], "scheduler": "simple", "steps": steps},
        },
        k={
            "type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["noise", "noise"],
                "guider": ["guider", "guider"],
                "sampler": ["sampler", "sampler"],
                "sigmas": ["sigmas", "sigmas"],
                "latent_image": ["lat", "latent"],
            },
        },
    )
    custom["dec"] = {
        "type": "VAEDecode",
        "inputs": {"vae": ["vae", "vae"], "latent": ["k", "output"]},
    }
    return custom
