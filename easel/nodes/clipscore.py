"""CLIPScore and best-of-N reranking (DALL-E 2 style), plus image batching."""

from __future__ import annotations

from typing import Any

from easel.core.node import Input, NodeError, node
from easel.core.types import Clip, Image


def _scores(clip: Any, image: Any, text: str) -> Any:
    from easel.models.clip_score import clip_scores

    if clip is None or clip.vision is None:
        raise NodeError(
            "this CLIP has no image tower: load a full CLIP with CLIPLoader "
            "(a checkpoint's text encoder cannot score images)",
            "clip",
        )
    return clip_scores(clip, image, text)


@node(category="evaluation", outputs={"score": float}, output_node=True)
def CLIPScore(image: Image, clip: Clip, text: str = Input("", multiline=True)) -> Any:
    """How well each image matches `text`: 100 * max(cosine, 0) of CLIP embeddings. `score`
    is the batch mean; the per-image scores appear in the run's results."""
    scores = _scores(clip, image, text)
    per_image = [round(float(s), 4) for s in scores]
    return {"score": float(scores.mean()), "ui": {"clip_scores": per_image, "text": text}}


@node(category="evaluation", outputs={"image": Image, "score": float})
def BestOfN(
    image: Image,
    clip: Clip,
    text: str = Input("", multiline=True),
    keep: int = Input(1, ge=1, le=64),
) -> Any:
    """Keep the `keep` images of a batch that CLIP finds closest to `text`, best first."""
    import torch

    scores = _scores(clip, image, text)
    order = torch.argsort(scores, descending=True)[:keep]
    return {"image": image[order].clone(), "score": float(scores[order[0]])}


@node(category="image", outputs={"image": Image})
def ImageBatch(image1: Image, image2: Image) -> Any:
    """Join two image batches (the second resized to the first's size if they differ)."""
    import torch

    from easel.nodes.upscale import resample

    if image2.shape[2:] != image1.shape[2:]:
        image2 = resample(image2, tuple(image1.shape[2:]), "bicubic")
    return torch.cat([image1, image2])


@node(category="image", outputs={"image": Image})
def ImageFromBatch(
    image: Image, index: int = Input(0, ge=0, le=4095), length: int = Input(1, ge=1, le=4096)
) -> Any:
    """Images `index` .. `index + length` of a batch."""
    if index >= image.shape[0]:
        raise NodeError(f"the batch has {image.shape[0]} images", "index")
    return image[index : index + length].clone()


NODES = [CLIPScore, BestOfN, ImageBatch, ImageFromBatch]
