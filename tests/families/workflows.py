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
