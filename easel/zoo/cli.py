"""Command line for the model zoo: `easel zoo train|export shapes`, `easel zoo eval`."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STAGES = ("vae", "clip", "unet", "prior", "decoder", "upscaler")
DEFAULT_WORK_DIR = Path("build/zoo/shapes")
DEFAULT_EXPORT_DIR = Path(__file__).parent / "weights" / "easel-shapes"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="easel zoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model family, stage by stage (resumable)")
    train.add_argument("family", choices=["shapes"])
    train.add_argument(
        "--stage",
        default="all",
        choices=[*STAGES, "all"],
        help="one stage, or all in order (default; finished stages are skipped unless --steps)",
    )
    train.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    train.add_argument("--steps", type=int, default=None, help="override the stage's step count")
    train.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    train.add_argument("--checkpoint-minutes", type=float, default=3.0)
    train.add_argument("--tiny", action="store_true", help="tiny models (tests and smoke runs)")
    train.add_argument("--no-eval", action="store_true", help="skip the evaluation after a stage")

    export = sub.add_parser("export", help="write the trained family as one model folder")
    export.add_argument("family", choices=["shapes"])
    export.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    export.add_argument("--out", type=Path, default=DEFAULT_EXPORT_DIR)
    export.add_argument("--dtype", default="float16", choices=["float16", "float32"])

    evaluate = sub.add_parser(
        "eval", help="prompt adherence, CLIPScore and CLIP-FID on held-out prompts"
    )
    evaluate.add_argument(
        "model",
        nargs="?",
        default="easel-shapes",
        help="a model name Easel finds (default easel-shapes) or a model folder",
    )
    evaluate.add_argument("--n", type=int, default=100, help="number of prompts (default 100)")
    evaluate.add_argument("--steps", type=int, default=20)
    evaluate.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="classifier-free guidance (default: the model's recommended)",
    )
    evaluate.add_argument(
        "--objects",
        type=int,
        default=1,
        choices=[1, 2],
        help="objects per prompt (default 1; the goals are for one)",
    )
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--device", default="cpu")
    evaluate.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        return _train(args)
    if args.command == "export":
        from easel.zoo.shapes.export import export_family

        out = export_family(args.work_dir, args.out, dtype=args.dtype)
        print(f"exported easel-shapes to {out}")
        return 0
    if args.command == "eval":
        return _evaluate(args)
    raise AssertionError(args.command)


def _train(args: argparse.Namespace) -> int:
    import os

    # The tokenizer's own thread pool fights torch for the cores; captions are cached anyway.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from easel.zoo.shapes.configs import FamilyConfig
    from easel.zoo.shapes.training import RunOptions

    if args.threads:
        torch.set_num_threads(args.threads)
    options = RunOptions(
        work_dir=args.work_dir,
        device=args.device,
        steps=args.steps,
        seed=args.seed,
        tiny=args.tiny,
        checkpoint_minutes=args.checkpoint_minutes,
        log_every=1 if args.tiny else 50,
        evaluate=not args.no_eval,
        family=FamilyConfig.tiny() if args.tiny else FamilyConfig(),
    )
    stages = STAGES if args.stage == "all" else (args.stage,)
    for stage in stages:
        if (options.stage_dir(stage) / "result.json").exists() and args.steps is None:
            print(f"stage {stage} already trained ({options.stage_dir(stage)}); skipping")
            continue
        start = time.monotonic()
        run_stage(stage, options)
        print(f"stage {stage} finished in {(time.monotonic() - start) / 60:.1f} min", flush=True)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import json
    import sys

    from easel.zoo.shapes.eval_model import evaluate_model, format_table

    folder = _model_folder(args.model)
    if folder is None:
        print(
            f"easel zoo eval: no model folder or model named {args.model!r} "
            "(put models in the models directory, or give a folder)",
            file=sys.stderr,
        )
        return 2
    if args.n < 2:
        print("easel zoo eval: --n must be at least 2 (FID needs a covariance)", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        metrics = evaluate_model(
            folder, args.n, args.steps, args.guidance, args.seed, args.device, args.objects
        )
    except (FileNotFoundError, OSError, ValueError) as exc:
        print(f"easel zoo eval: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(metrics) if args.json else format_table(metrics))
    return 0


def _model_folder(model: str) -> Path | None:
    """A folder given directly, else a discovered model of that name."""
    path = Path(model)
    if path.is_dir():
        return path
    from easel.models.discovery import discover

    entry = discover().get(model)
    return entry.path if entry is not None and entry.format == "diffusers" else None


def run_stage(stage: str, options: Any) -> None:
    """Train one stage; its inputs (earlier stages) must be in options.work_dir."""
    if stage == "vae":
        from easel.zoo.shapes.train_vae import train_vae

        train_vae(options)
    elif stage == "clip":
        from easel.zoo.shapes.train_clip import train_clip

        train_clip(options)
    elif stage == "unet":
        from easel.zoo.shapes.train_unet import train_unet

        train_unet(options)
    elif stage == "prior":
        from easel.zoo.shapes.train_prior import train_prior

        train_prior(options)
    elif stage == "decoder":
        from easel.zoo.shapes.train_decoder import train_decoder

        train_decoder(options)
    elif stage == "upscaler":
        from easel.zoo.shapes.train_upscaler import train_upscaler

        train_upscaler(options)
    else:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
