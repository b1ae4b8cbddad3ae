"""Frechet distance between generated and rendered image sets in the tiny CLIP's feature space.

FID proper uses Inception-v3 features, which cannot be downloaded here and know nothing of
32-pixel shape scenes; the family's own CLIP image tower stands in for it (as "CLIP-FID"
does for larger models). Small sets bias FID upwards, so the distance between two rendered
sets of the same prompts (different jitter) is reported beside it as the floor to compare with.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from easel.zoo.shapes.configs import NATIVE_SIZE
from easel.zoo.shapes.data import Scene, render


@torch.no_grad()
def clip_features(clip: Any, images: np.ndarray, chunk: int = 256) -> np.ndarray:
    """The CLIP vision tower's pooled features (before the projection), float64."""
    from easel.zoo.shapes.training import images_to_tensor

    device = str(clip.device)
    out = []
    for start in range(0, len(images), chunk):
        pixels = images_to_tensor(images[start : start + chunk], device).to(clip.dtype)
        out.append(clip.vision_model(pixel_values=pixels).pooler_output.double().cpu().numpy())
    return np.concatenate(out)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) of two feature sets (rows).

    Tr((S_a S_b)^1/2) is the sum of the square roots of the eigenvalues of S_a S_b, which
    are real and non-negative for covariance matrices (round-off can leave tiny negative or
    imaginary parts; they are dropped).
    """
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eig = np.linalg.eigvals(cov_a @ cov_b)
    tr_sqrt = float(np.sqrt(np.clip(eig.real, 0.0, None)).sum())
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_sqrt)


def clip_fid(clip: Any, images: np.ndarray, scenes: list[Scene], seed: int) -> dict[str, float]:
    """`fid` of images against renders of their scenes, and `fid_rendered_floor`."""
    size = images.shape[1]
    if size != NATIVE_SIZE:
        raise ValueError(f"FID compares {NATIVE_SIZE}px images; got {size}px")
    truth = render(scenes, size, rng=np.random.default_rng(seed + 1))
    other = render(scenes, size, rng=np.random.default_rng(seed + 2))
    ref = clip_features(clip, truth)
    return {
        "fid": frechet_distance(clip_features(clip, images), ref),
        "fid_rendered_floor": frechet_distance(clip_features(clip, other), ref),
    }
