"""Command line for the model zoo: `easel zoo train|export shapes ...`."""

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
