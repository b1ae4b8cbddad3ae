"""`easel zoo eval`: prompt adherence, CLIPScore and CLIP-FID of an exported easel-shapes folder.

It loads the folder the way any Stable Diffusion-format checkpoint loads (diffusers
`StableDiffusionPipeline` plus the family's `clip/`), so it measures the weights that ship.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Issue #4's goals for single-object prompts.
GOALS = {"color_accuracy": 0.95, "shape_accuracy": 0.85, "position_accuracy": 0.90}
TABLE_KEYS = (
    "color_accuracy",
    "shape_accuracy",
    "size_accuracy",
    "position_accuracy",
    "background_accuracy",
    "all_accuracy",
    "clip_score",
    "fid",
    "fid_rendered_floor",
    "n",
)


def load_pipeline(folder: Path, device: str = "cpu") -> tuple[Any, Any, Any, dict[str, Any]]:
    """(pipeline with the recommended sampler, CLIPModel, tokenizer, easel.json) in float32."""
    if not (folder / "model_index.json").is_file() or not (folder / "clip").is_dir():
        raise FileNotFoundError(
            f"{folder} is not an easel-shapes model folder (needs model_index.json and clip/)"
        )
    info_path = folder / "easel.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    from transformers.utils import logging as transformers_logging

    from easel.models.loading import quiet_libraries

    quiet_libraries()
    # Importing the pipeline warns that torchvision is missing; no image processor is used.
    transformers_logging.set_verbosity_error()
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline
    from transformers import CLIPModel, CLIPTokenizer

    # fp16 weights are upcast: CPUs run float16 convolutions slowly or not at all.
    pipe = StableDiffusionPipeline.from_pretrained(folder, dtype=torch.float32)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    clip_class: Any = CLIPModel
    clip = clip_class.from_pretrained(folder / "clip", dtype=torch.float32).to(device).eval()
    return pipe, clip, CLIPTokenizer.from_pretrained(folder / "clip"), info


def evaluate_model(
    folder: Path,
    n: int = 100,
    steps: int = 20,
    guidance: float | None = None,
    seed: int = 0,
    device: str = "cpu",
    objects: int = 1,
) -> dict[str, Any]:
    """Metrics of the model in `folder` on n held-out prompts of one or two objects.

    `goals_met` judges the issue's goals, which are set for single-object prompts; it is
    None for two-object prompts (whose prompts hold at least one held-out object).
    """
    from easel.zoo.shapes.evaluate import evaluate_pipeline

    if objects not in (1, 2):
        raise ValueError(f"objects must be 1 or 2, not {objects}")
    pipe, clip, tokenizer, info = load_pipeline(folder, device)
    cfg = guidance if guidance is not None else float(info.get("recommended", {}).get("cfg", 3.0))
    metrics = evaluate_pipeline(
        pipe,
        clip,
        tokenizer,
        n,
        seed,
        steps,
        cfg,
        with_fid=True,
        two_object_prob=1.0 if objects == 2 else 0.0,
    )
    metrics["model"] = str(folder)
    metrics["sampler"] = "euler"
    metrics["objects"] = objects
    metrics["goals_met"] = all(metrics[k] >= v for k, v in GOALS.items()) if objects == 1 else None
    return metrics


def format_table(metrics: dict[str, Any]) -> str:
    """The metrics as an aligned two-column table, goals beside the accuracies they apply to."""
    rows = []
    for key in TABLE_KEYS:
        value = metrics[key]
        shown = f"{value:.1%}" if key.endswith("_accuracy") else f"{value}"
        goal = f"goal >= {GOALS[key]:.0%}" if key in GOALS and metrics["objects"] == 1 else ""
        if goal:
            goal += "  met" if value >= GOALS[key] else "  NOT met"
        rows.append(f"{key:<22}{shown:>10}  {goal}".rstrip())
    kind = "single-object" if metrics["objects"] == 1 else "two-object"
    header = (
        f"{metrics['model']}: held-out {kind} prompts, {metrics['steps']} "
        f"{metrics['sampler']} steps, guidance {metrics['guidance']}"
    )
    return "\n".join([header, *rows])
