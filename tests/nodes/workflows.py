"""Workflow builders shared by the node tests."""

from __future__ import annotations

from typing import Any

SIZE = 16


def txt2img(prompt: str = "a red circle", negative: str = "blue", **sampler: Any) -> dict[str, Any]:
    """CheckpointLoader -> TextEncode x2 -> EmptyLatent -> KSampler -> VAEDecode."""
    settings = {
        "seed": 42,
        "steps": 2,
        "cfg": 5.0,
        "sampler_name": "euler",
        "scheduler": "normal",
        **sampler,
    }
    return {
        "ckpt": {"type": "CheckpointLoader", "inputs": {"name": "tiny-shapes"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": prompt}},
        "neg": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": negative}},
        "lat": {
            "type": "EmptyLatent",
            "inputs": {"width": SIZE, "height": SIZE, "vae": ["ckpt", "vae"]},
        },
        "k": {
            "type": "KSampler",
            "inputs": {
                "model": ["ckpt", "model"],
                "positive": ["pos", "conditioning"],
                "negative": ["neg", "conditioning"],
                "latent": ["lat", "latent"],
                **settings,
            },
        },
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["ckpt", "vae"], "latent": ["k", "latent"]}},
    }
