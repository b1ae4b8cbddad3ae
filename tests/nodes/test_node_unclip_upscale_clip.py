"""unCLIP prior + decoder, pixel and model upscaling, CLIPScore and best-of-N."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from easel.core.context import Context
from easel.core.node import NodeError


def unclip_nodes(candidates: int = 3) -> dict[str, Any]:
    """CheckpointLoader(decoder) -> TextEncode -> PriorSample -> KSampler -> VAEDecode."""
    return {
        "ckpt": {"type": "CheckpointLoader", "inputs": {"name": "tiny-shapes/decoder"}},
        "prior": {"type": "PriorLoader", "inputs": {"name": "tiny-shapes"}},
        "text": {
            "type": "TextEncode",
            "inputs": {"clip": ["ckpt", "clip"], "text": "a red circle"},
        },
        "embed": {
            "type": "PriorSample",
            "inputs": {
                "prior": ["prior", "prior"],
                "positive": ["text", "conditioning"],
                "seed": 1,
                "steps": 3,
                "guidance": 4.0,
                "candidates": candidates,
            },
        },
        "lat": {"type": "EmptyLatent", "inputs": {"width": 16, "height": 16}},
        "k": {
            "type": "KSampler",
            "inputs": {
                "model": ["ckpt", "model"],
                "positive": ["embed", "positive"],
                "negative": ["embed", "negative"],
                "latent": ["lat", "latent"],
                "seed": 2,
                "steps": 2,
                "cfg": 4.0,
            },
        },
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["ckpt", "vae"], "latent": ["k", "latent"]}},
    }


def test_unclip_prior_then_decoder(run_workflow: Any) -> None:
    result = run_workflow(unclip_nodes(), ["dec", "embed"])
    assert result.status == "succeeded", result.failures
    embeds = result.values["embed"]["image_embeds"]
    assert embeds.shape == (1, 8) and torch.isfinite(embeds).all()
    assert torch.equal(result.values["embed"]["positive"]["image_embeds"], embeds)
    assert torch.count_nonzero(result.values["embed"]["negative"]["image_embeds"]) == 0
    image = result.values["dec"]["image"]
    assert image.shape == (1, 3, 16, 16) and image.min() >= 0 and image.max() <= 1


def test_prior_keeps_the_candidate_closest_to_the_text(tiny_manager: Any) -> None:
    from easel.models.prior import sample_prior
    from easel.nodes.conditioning import TextEncode

    clip = tiny_manager.load_clip("tiny-shapes")
    prior = tiny_manager.load_prior("tiny-shapes")
    cond = TextEncode.call(Context(), {"clip": clip, "text": "a blue square"})["conditioning"]
    best, scores = sample_prior(prior, cond, None, seed=4, steps=3, guidance=4.0, candidates=5)
    assert scores.shape == (5,)
    cosine = torch.nn.functional.cosine_similarity(best, cond["pooled"]).item()
    assert cosine == pytest.approx(float(scores.max()), abs=1e-5)
    single, _ = sample_prior(prior, cond, None, seed=4, steps=3, guidance=4.0, candidates=5)
    assert torch.equal(best, single)  # seeded


def test_decoder_refuses_text_conditioning(run_workflow: Any) -> None:
    nodes = unclip_nodes()
    nodes["k"]["inputs"]["positive"] = ["text", "conditioning"]
    del nodes["k"]["inputs"]["negative"]
    result = run_workflow(nodes, ["dec"])
    assert result.status == "failed"
    assert "PriorSample" in result.failures[0].message


@pytest.mark.parametrize("method", ["nearest", "bilinear", "bicubic", "lanczos", "area"])
def test_pixel_upscale_methods(method: str) -> None:
    from easel.nodes.upscale import Upscale

    image = torch.rand(2, 3, 8, 6)
    by_scale = Upscale.call(
        Context(), {"image": image, "method": method, "scale": 2.0, "width": 0, "height": 0}
    )["image"]
    assert by_scale.shape == (2, 3, 16, 12)
    assert by_scale.dtype == torch.float32 and by_scale.min() >= 0 and by_scale.max() <= 1
    by_width = Upscale.call(
        Context(), {"image": image, "method": method, "scale": 1.0, "width": 9, "height": 0}
    )["image"]
    assert by_width.shape == (2, 3, 12, 9)
    if method == "nearest":
        assert torch.equal(by_scale[:, :, ::2, ::2], image)
    if method == "area":
        assert torch.allclose(
            Upscale.call(
                Context(),
                {"image": by_scale, "method": "area", "scale": 0.5, "width": 0, "height": 0},
            )["image"],
            Upscale.call(
                Context(),
                {"image": by_scale, "method": "area", "scale": 1.0, "width": 6, "height": 8},
            )["image"],
        )


def test_model_upscale(tiny_manager: Any) -> None:
    from easel.nodes.upscale import ModelUpscale

    handle = tiny_manager.load_upscaler("tiny-shapes")
    assert handle.factor == 2
    image = torch.rand(1, 3, 8, 8)
    out = ModelUpscale.call(
        Context(), {"upscale_model": handle, "image": image, "seed": 0, "steps": 2}
    )["image"]
    assert out.shape == (1, 3, 16, 16) and out.min() >= 0 and out.max() <= 1
    again = ModelUpscale.call(
        Context(), {"upscale_model": handle, "image": image, "seed": 0, "steps": 2}
    )["image"]
    assert torch.equal(out, again)
    other = ModelUpscale.call(
        Context(), {"upscale_model": handle, "image": 1 - image, "seed": 0, "steps": 2}
    )["image"]
    assert not torch.equal(out, other)  # the low-res image conditions the result


def test_clip_score_is_clipped_cosine_times_100(tiny_manager: Any, tiny_models: Any) -> None:
    from transformers import CLIPModel

    from easel.nodes.clipscore import CLIPScore

    clip = tiny_manager.load_clip("tiny-shapes")
    images = torch.rand(4, 3, 16, 16)
    result = CLIPScore.call(Context(), {"image": images, "clip": clip, "text": "a red circle"})
    scores = torch.tensor(result["ui"]["clip_scores"])
    assert scores.shape == (4,) and (scores >= 0).all() and (scores <= 100).all()
    assert result["score"] == pytest.approx(float(scores.mean()), abs=1e-3)
    # Independently: CLIPModel's own logits are logit_scale * cosine.
    reference = CLIPModel.from_pretrained(str(tiny_models.bundle / "clip")).eval()
    mean = torch.tensor(clip.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(clip.image_std).view(1, 3, 1, 1)
    tokens = clip.tokenizer(
        ["a red circle"], padding="max_length", max_length=77, return_tensors="pt"
    )
    with torch.no_grad():
        out = reference(input_ids=tokens.input_ids, pixel_values=(images - mean) / std)
    cosine = out.logits_per_image[:, 0] / reference.logit_scale.exp()
    assert torch.allclose(scores, 100 * cosine.clamp(min=0), atol=1e-3)


def test_best_of_n_keeps_the_highest_scores(tiny_manager: Any) -> None:
    from easel.nodes.clipscore import BestOfN, CLIPScore

    clip = tiny_manager.load_clip("tiny-shapes")
    images = torch.rand(5, 3, 16, 16)
    scores = CLIPScore.call(Context(), {"image": images, "clip": clip, "text": "blue"})["ui"][
        "clip_scores"
    ]
    best = BestOfN.call(Context(), {"image": images, "clip": clip, "text": "blue", "keep": 2})
    order = sorted(range(5), key=lambda i: -scores[i])[:2]
    assert torch.equal(best["image"], images[order])
    assert best["score"] == pytest.approx(scores[order[0]], abs=1e-3)


def test_clip_score_needs_an_image_tower(tiny_manager: Any) -> None:
    from easel.nodes.clipscore import CLIPScore

    _, text_only, _ = tiny_manager.load_checkpoint("tiny-shapes")
    with pytest.raises(NodeError, match="CLIPLoader"):
        CLIPScore.call(
            Context(), {"image": torch.rand(1, 3, 16, 16), "clip": text_only, "text": "x"}
        )
