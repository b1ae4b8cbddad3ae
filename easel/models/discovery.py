"""Finds models on disk (user folder, EASEL_MODELS_DIR, bundled demo) without importing torch."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
CONFIG_SUFFIX = ".config"  # `model.safetensors` takes its diffusers config from `model.config/`
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "zoo" / "weights"

# Sub-folders of an Easel bundle (the layout of easel-shapes) and what each provides.
BUNDLE_PARTS = ("clip", "prior", "decoder", "upscaler")


@dataclass(frozen=True)
class ModelEntry:
    """One model found on disk: a diffusers folder, a single file, or a part of a bundle."""

    name: str
    path: Path
    format: str  # "diffusers" (a folder) or "single_file"
    parts: tuple[str, ...] = field(default=())  # bundle parts present: clip, prior, ...

    @property
    def is_pickle(self) -> bool:
        return self.format == "single_file" and self.path.suffix in PICKLE_SUFFIXES


def model_roots(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Where models are looked for, first match wins: $EASEL_MODELS_DIR (os.pathsep separated),
    the user data folder's `models/`, then the bundled demo weights."""
    env = os.environ if environ is None else environ
    roots = [Path(p).expanduser() for p in env.get("EASEL_MODELS_DIR", "").split(os.pathsep) if p]
    roots.append(Path(platformdirs.user_data_dir("easel", appauthor=False)) / "models")
    roots.append(BUNDLED_DIR)
    seen: list[Path] = []
    for root in roots:
        if root not in seen:
            seen.append(root)
    return seen


def _is_pipeline_folder(path: Path) -> bool:
    return (path / "model_index.json").is_file() or (path / "unet" / "config.json").is_file()


def _is_clip_folder(path: Path) -> bool:
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "clip"
    except (OSError, ValueError):
        return False


def scan(root: Path, max_depth: int = 3) -> list[ModelEntry]:
    """The models under one root, named by their path relative to it (without suffix)."""
    entries: list[ModelEntry] = []
    if not root.is_dir():
        return entries

    def visit(folder: Path, depth: int) -> None:
        try:
            children = sorted(folder.iterdir())
        except OSError:
            return
        for child in children:
            if child.name.startswith("."):
                continue
            rel = child.relative_to(root).as_posix()
            if child.is_dir():
                if child.name.endswith(CONFIG_SUFFIX):
                    continue
                parts = tuple(p for p in BUNDLE_PARTS if (child / p).is_dir())
                if parts or _is_pipeline_folder(child) or _is_clip_folder(child):
                    entries.append(ModelEntry(rel, child, "diffusers", parts))
                elif depth < max_depth:
                    visit(child, depth + 1)
            elif child.suffix in SAFE_SUFFIXES + PICKLE_SUFFIXES:
                entries.append(ModelEntry(rel[: -len(child.suffix)], child, "single_file"))

    visit(root, 1)
    return entries


def discover(environ: Mapping[str, str] | None = None,
             roots: list[Path] | None = None) -> dict[str, ModelEntry]:
    """All models by name; a name found under an earlier root hides later ones."""
    found: dict[str, ModelEntry] = {}
    for root in roots if roots is not None else model_roots(environ):
        for entry in scan(root):
            found.setdefault(entry.name, entry)
    return found


def checkpoint_names(environ: Mapping[str, str] | None = None,
                     roots: list[Path] | None = None) -> list[str]:
    """Names a CheckpointLoader accepts: pipelines, single files, and `<bundle>/decoder`."""
    names: list[str] = []
    for name, entry in discover(environ, roots).items():
        if entry.format == "single_file" or _is_pipeline_folder(entry.path):
            names.append(name)
        if "decoder" in entry.parts:
            names.append(f"{name}/decoder")
    return sorted(names)


def names_with_part(part: str, environ: Mapping[str, str] | None = None,
                    roots: list[Path] | None = None) -> list[str]:
    """Names of the models that hold `part` ("clip", "prior", "upscaler")."""
    names = []
    for name, entry in discover(environ, roots).items():
        if part in entry.parts or (part == "clip" and _is_clip_folder(entry.path)):
            names.append(name)
    return sorted(names)
