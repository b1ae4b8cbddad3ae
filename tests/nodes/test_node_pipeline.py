"""The diffusion nodes end to end on tiny models: text, latents, img2img, progress, cancel."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from easel.core.context import CancelToken, Context
from easel.core.node import NodeError
from tests.nodes.workflows import txt2img


def test_progress_events_carry_small_previews(run_workflow: Any) -> None:
    from PIL import Image

    events: list[Any] = []
    result = run_workflow(txt2img(steps=3), ["dec"], on_event=events.append)
    assert result.status == "succeeded", result.failures
    progress = [e for e in events if e.type == "node_progress" and e.node_id == "k"]
    assert [(e.data["step"], e.data["total"]) for e in progress] == [(1, 3), (2, 3), (3, 3)]
    # The first step shows a preview, later ones at most every PREVIEW_INTERVAL seconds,
    # and the last step always does.
    previews = [e.data["preview"] for e in progress]
    assert isinstance(previews[0], Image.Image) and isinstance(previews[-1], Image.Image)
    assert all(p is None or isinstance(p, Image.Image) for p in previews)
    assert previews[-1].size == (8, 8)


def test_cancel_between_steps(run_workflow: Any) -> None:
    token = CancelToken()
    steps: list[int] = []

    def on_event(event: Any) -> None:
        if event.type == "node_progress":
            steps.append(event.data["step"])
            token.cancel("user")

    result = run_workflow(txt2img(steps=5, seed=99), ["dec"], on_event=on_event, cancel=token)
    assert result.status == "cancelled"
    assert steps == [1]
    assert result.node_status["dec"] == "cancelled"


def test_negative_defaults_to_the_empty_prompt(run_workflow: Any) -> None:
    nodes = txt2img(negative="")
    explicit = run_workflow(nodes, ["k"]).values["k"]["latent"]["samples"]
    del nodes["k"]["inputs"]["negative"]
    nodes.pop("neg")
    implicit = run_workflow(nodes, ["k"]).values["k"]["latent"]["samples"]
    assert torch.equal(explicit, implicit)


def test_empty_latent_floors_a_size_off_the_vae_factor(run_workflow: Any) -> None:
    """As ComfyUI's empty latents: 17 pixels at factor 2 is 8 latent cells, 16 pixels out."""
    nodes = txt2img()
    nodes["lat"]["inputs"]["width"] = 17
    result = run_workflow(nodes, ["dec"])
    assert result.status == "succeeded", result.failures
    assert result.values["dec"]["image"].shape[-1] == 16


def test_unlinked_empty_latent_takes_the_model_shape(run_workflow: Any) -> None:
    nodes = txt2img()
    nodes["lat"]["inputs"] = {"width": 24, "height": 16, "batch_size": 2}
    result = run_workflow(nodes, ["dec"])
    assert result.status == "succeeded", result.failures
    assert result.values["k"]["latent"]["samples"].shape == (2, 4, 8, 12)
    assert result.values["dec"]["image"].shape == (2, 3, 16, 24)


def test_long_prompts_are_chunked_with_a_warning(run_workflow: Any) -> None:
    prompt = " ".join(["red"] * 120)
    nodes = txt2img(prompt=prompt)
    warnings: list[str] = []

    def on_event(event: Any) -> None:
        if event.type == "node_warning":
            warnings.append(event.data["message"])

    result = run_workflow(nodes, ["dec"], on_event=on_event)
    assert result.status == "succeeded", result.failures
    assert any("120 tokens" in w and "2 windows" in w for w in warnings)
    assert result.values["pos"]["conditioning"]["embeds"].shape == (1, 154, 8)


def test_img2img_keeps_more_of_the_image_at_low_denoise(run_workflow: Any) -> None:
    from easel.nodes.vae import VAEEncode

    base = run_workflow(txt2img(seed=3), ["dec", "ckpt"])
    image, vae = base.values["dec"]["image"], base.values["ckpt"]["vae"]
    encoded = VAEEncode.call(Context(), {"vae": vae, "image": image})["latent"]
    assert encoded["samples"].shape == (1, 4, 8, 8)

    def img2img(denoise: float) -> torch.Tensor:
        from easel.nodes.sampling import KSampler

        inputs = {
            "model": base.values["ckpt"]["model"],
            "positive": base.values["pos"]["conditioning"],
            "negative": base.values["neg"]["conditioning"],
            "latent": encoded,
            "seed": 11,
            "steps": 2,
            "cfg": 5.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": denoise,
        }
        return KSampler.call(Context(), inputs)["latent"]["samples"]

    light, heavy = img2img(0.1), img2img(0.9)
    distance = lambda x: float((x - encoded["samples"]).abs().mean())  # noqa: E731
    assert 0 < distance(light) < distance(heavy)


def test_vae_encode_crops_to_the_factor_with_a_warning(tiny_manager: Any) -> None:
    from easel.nodes.vae import VAEEncode

    _, _, vae = tiny_manager.load_checkpoint("tiny-shapes")
    warnings: list[str] = []
    ctx = Context(on_warning=warnings.append)
    latent = VAEEncode.call(ctx, {"vae": vae, "image": torch.rand(1, 3, 17, 16)})["latent"]
    assert latent["samples"].shape == (1, 4, 8, 8)
    assert warnings and "16x16" in warnings[0]


def test_latent_upscale_and_batch_slicing() -> None:
    from easel.nodes.latent import LatentFromBatch, LatentUpscale

    latent = {"samples": torch.randn(3, 4, 8, 8), "width": 16, "height": 16}
    up = LatentUpscale.call(
        Context(), {"latent": latent, "method": "bilinear", "scale": 1.5, "width": 0, "height": 0}
    )["latent"]
    assert up["samples"].shape == (3, 4, 12, 12) and (up["width"], up["height"]) == (24, 24)
    sized = LatentUpscale.call(
        Context(),
        {"latent": latent, "method": "nearest-exact", "scale": 1.0, "width": 32, "height": 0},
    )["latent"]
    assert sized["samples"].shape == (3, 4, 16, 16)
    one = LatentFromBatch.call(Context(), {"latent": latent, "index": 1, "length": 1})["latent"]
    assert torch.equal(one["samples"], latent["samples"][1:2])
    with pytest.raises(NodeError, match="3 latents"):
        LatentFromBatch.call(Context(), {"latent": latent, "index": 5, "length": 1})


def test_unknown_checkpoint_lists_the_available_ones(run_workflow: Any) -> None:
    from easel.core.graph import WorkflowError

    nodes = txt2img()
    nodes["ckpt"]["inputs"]["name"] = "missing"
    with pytest.raises(WorkflowError, match="tiny-shapes"):
        run_workflow(nodes, ["dec"])
