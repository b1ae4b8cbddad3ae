"""Listing a ComfyUI-layout models folder of 500 files (or --files N), cold and warm.

    python benchmarks/bench_model_listing.py [--files 500] [--repeat 20]

It writes empty placeholder files (listing never opens a model file) spread over the kinds
and sub-folders a real install has, plus a few diffusers folders, then measures:
  - cold: every kind listed with Easel's listing cache empty (each directory is read);
  - warm: the same with the cache filled (each directory is only stat'ed for its mtime);
  - one kind (loras) warm, as a loader's choices list asks for it;
  - resolve() of one name, warm, as a loader asks for a path;
  - after adding one file: the listing sees it (the cache is invalidated by the mtime).
The OS page cache is warm in every case: "cold" is Easel's own cache.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from easel.models import discovery  # noqa: E402

# (kind folder, share of the files, sub-folders): roughly a user's install.
LAYOUT = (
    ("checkpoints", 0.30, ("sd15", "sdxl", "sdxl/refiners", "pony", "")),
    ("loras", 0.35, ("style", "character", "sdxl/concept", "sd15/detail", "")),
    ("vae", 0.04, ("",)),
    ("embeddings", 0.12, ("negative", "")),
    ("controlnet", 0.08, ("sd15", "sdxl")),
    ("upscale_models", 0.04, ("",)),
    ("clip", 0.03, ("",)),
    ("unet", 0.02, ("",)),
    ("clip_vision", 0.02, ("",)),
)
SUFFIXES = (".safetensors", ".safetensors", ".safetensors", ".pt", ".ckpt")


def build(root: Path, files: int) -> int:
    made = 0
    for kind, share, subs in LAYOUT:
        count = max(1, round(files * share))
        for i in range(count):
            folder = root / kind / subs[i % len(subs)]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{kind}-{i:04d}{SUFFIXES[i % len(SUFFIXES)]}").touch()
            made += 1
    for i in range(3):  # diffusers pipeline folders: listed as one name each, not entered
        pipe = root / "checkpoints" / f"diffusers-{i}"
        (pipe / "unet").mkdir(parents=True)
        (pipe / "model_index.json").write_text("{}")
        (pipe / "unet" / "config.json").write_text("{}")
        (pipe / "unet" / "diffusion_pytorch_model.safetensors").touch()
    return made


def timed(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "models"
        made = build(root, args.files)
        roots = [root]

        def list_all() -> int:
            return sum(len(discovery.kind_names(kind, roots)) for kind in discovery.KINDS)

        def cold() -> None:
            discovery.clear_cache()
            list_all()

        listed = list_all()
        cold_s = timed(cold, args.repeat)
        list_all()
        warm_s = timed(list_all, args.repeat)
        one_kind_s = timed(lambda: discovery.kind_names("loras", roots), args.repeat)
        name = discovery.kind_names("loras", roots)[-1]
        resolve_s = timed(lambda: discovery.resolve("loras", name, roots), args.repeat)
        (root / "loras" / "style" / "new-one.safetensors").touch()
        newest = time.time_ns() + 1_000_000_000
        os.utime(root / "loras" / "style", ns=(newest, newest))
        seen = "style/new-one.safetensors" in discovery.kind_names("loras", roots)

    cores = os.cpu_count()
    print(
        f"Easel model listing benchmark on {platform.node()} ({platform.machine()}, "
        f"{cores} cores, Python {platform.python_version()}), median of {args.repeat}"
    )
    print(
        f"{made} placeholder files + 3 diffusers folders; {listed} names listed over "
        f"{len(discovery.KINDS)} kinds"
    )
    rows = (
        ("all kinds, cold (cache empty)", cold_s),
        ("all kinds, warm (cached)", warm_s),
        ("one kind (loras), warm", one_kind_s),
        ("resolve one name, warm", resolve_s),
    )
    for label, seconds in rows:
        print(f"  {label:<32} {seconds * 1000:8.2f} ms")
    print(f"  a file added is listed at once: {'yes' if seen else 'NO'}")


if __name__ == "__main__":
    main()
