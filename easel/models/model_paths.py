"""Where model folders are: the ComfyUI layout, extra_model_paths.yaml, A1111 and the config file.

A *root* is what a user points Easel at (`--models-dir`, `EASEL_MODELS_DIR`, the config file):
a models folder in ComfyUI's layout, a ComfyUI install (its `models/` and its
`extra_model_paths.yaml`), an A1111 install, or an `extra_model_paths.yaml` file. `expand()`
turns one root into `KindFolder`s: the folders that hold one kind of model each. No file is
opened here except the YAML and TOML files named by the user, and no torch is imported.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

log = logging.getLogger(__name__)

# Each kind and the folders (under a models folder) that hold it; the first is where ComfyUI
# writes, the others are its legacy names (ComfyUI's `folder_paths.py` maps them the same way).
KINDS: dict[str, tuple[str, ...]] = {
    "checkpoints": ("checkpoints",),
    "loras": ("loras",),
    "vae": ("vae",),
    "embeddings": ("embeddings",),
    "controlnet": ("controlnet", "t2i_adapter"),
    "upscale_models": ("upscale_models",),
    "diffusion_models": ("diffusion_models", "unet"),
    "text_encoders": ("text_encoders", "clip"),
    "clip_vision": ("clip_vision",),
    "style_models": ("style_models",),
    "model_patches": ("model_patches",),
    "geometry_estimation": ("geometry_estimation",),  # Depth Anything 3 (LoadDA3Model)
}
# Names a user or an extra_model_paths.yaml may use for a kind.
KIND_ALIASES: dict[str, str] = {
    folder: kind for kind, folders in KINDS.items() for folder in folders
} | {
    "checkpoint": "checkpoints",
    "lora": "loras",
    "embedding": "embeddings",
    "upscale_model": "upscale_models",
    "diffusion_model": "diffusion_models",
    "text_encoder": "text_encoders",
    "diffusers": "checkpoints",
}
# Folders of a ComfyUI models folder that hold no model Easel loads as a checkpoint; a root's
# top-level listing skips them.
OTHER_COMFY_FOLDERS = frozenset(
    {
        "configs",
        "diffusers",
        "vae_approx",
        "gligen",
        "hypernetworks",
        "photomaker",
        "audio_encoders",
        "hypernetwork",
        "latent_upscale_models",
        "custom_nodes",
        "classifiers",
        "sams",
        "ultralytics",
        "insightface",
        "ipadapter",
    }
)
# An A1111 (stable-diffusion-webui) install: the same mapping as the `a111:` section of
# ComfyUI's extra_model_paths.yaml.example.
A1111_LAYOUT: dict[str, tuple[str, ...]] = {
    "checkpoints": ("models/Stable-diffusion",),
    "vae": ("models/VAE",),
    "loras": ("models/Lora", "models/LyCORIS"),
    "upscale_models": ("models/ESRGAN", "models/RealESRGAN", "models/SwinIR"),
    "embeddings": ("embeddings",),
    "controlnet": ("models/ControlNet",),
    "clip_vision": ("models/clip_vision",),
    "text_encoders": ("models/text_encoder",),
}
YAML_SUFFIXES = (".yaml", ".yml")
CONFIG_FILE_NAME = "config.toml"
LEGACY_ROOT_DEPTH = 3  # how deep a root without kind folders is searched (as before kinds)
KIND_DEPTH = 8  # how deep a kind folder is searched (ComfyUI walks all the way)


@dataclass(frozen=True)
class KindFolder:
    """A folder holding models of one kind. `top_level` marks a models root listed for its
    loose checkpoints (files and diffusers folders lying directly in it)."""

    kind: str
    path: Path
    depth: int = KIND_DEPTH
    top_level: bool = False
    skip: frozenset[str] = frozenset()  # sub-folder names that are not models (other kinds)


def plugin_kinds() -> dict[str, tuple[str, ...]]:
    """Kinds the plugins loaded in this process registered (`register_model_kinds`); a
    built-in kind keeps its folders. Listing never loads plugins itself: the commands and the
    server load them before they list or run anything."""
    try:
        from easel.core import plugins
    except ImportError:
        return {}
    if getattr(plugins, "_current", None) is None or not hasattr(plugins, "plugin_model_kinds"):
        return {}
    try:
        found = plugins.plugin_model_kinds()
    except Exception:  # a broken plugin registry must not stop model listing
        log.debug("plugin model kinds unavailable", exc_info=True)
        return {}
    return {k: tuple(v) for k, v in found.items() if k not in KINDS and k not in KIND_ALIASES}


def all_kinds() -> dict[str, tuple[str, ...]]:
    """The built-in kinds, then the plugins' kinds."""
    return KINDS | plugin_kinds()


def canonical_kind(kind: str) -> str | None:
    """`clip` -> `text_encoders`, `unet` -> `diffusion_models`; None for an unknown word."""
    if kind in KINDS:
        return kind
    if kind in KIND_ALIASES:
        return KIND_ALIASES[kind]
    return kind if kind in plugin_kinds() else None


def is_comfyui_root(path: Path) -> bool:
    """A ComfyUI install (source checkout or portable): `models/` beside `comfy/` or main.py."""
    return (path / "models").is_dir() and (
        (path / "comfy").is_dir()
        or (path / "main.py").is_file()
        or (path / "folder_paths.py").is_file()
    )


def is_a1111_root(path: Path) -> bool:
    return (path / "models" / "Stable-diffusion").is_dir()


def models_folder(
    path: Path, kinds: Mapping[str, tuple[str, ...]] | None = None
) -> list[KindFolder]:
    """The kind folders of one models folder in ComfyUI's layout, plus its loose checkpoints.

    A folder with no kind sub-folder (the bundled demo weights, an Easel folder from before
    kinds) is searched a few levels deep for checkpoints, as Easel always did.
    """
    kinds = all_kinds() if kinds is None else kinds
    if not any((path / folder).is_dir() for folders in kinds.values() for folder in folders):
        return [KindFolder("checkpoints", path, LEGACY_ROOT_DEPTH, top_level=True)]
    skip = frozenset(f for names in kinds.values() for f in names) | OTHER_COMFY_FOLDERS
    folders = [KindFolder("checkpoints", path, 1, top_level=True, skip=skip)]
    for kind, names in kinds.items():
        folders.extend(KindFolder(kind, path / name) for name in names)
    folders.append(KindFolder("checkpoints", path / "diffusers"))  # ComfyUI's diffusers folder
    return folders


_yaml_cache: dict[Path, tuple[int, int, list[KindFolder]]] = {}


def read_extra_model_paths(yaml_path: Path) -> list[KindFolder]:
    """`parse_extra_model_paths`, kept until the file changes (listing asks for it often)."""
    try:
        stat = yaml_path.stat()
    except OSError:
        return parse_extra_model_paths(yaml_path)  # raises the clear error
    key = yaml_path.resolve()
    cached = _yaml_cache.get(key)
    if cached is not None and cached[:2] == (stat.st_mtime_ns, stat.st_size):
        return list(cached[2])
    folders = parse_extra_model_paths(yaml_path)
    _yaml_cache[key] = (stat.st_mtime_ns, stat.st_size, folders)
    return list(folders)


def parse_extra_model_paths(yaml_path: Path) -> list[KindFolder]:
    """The folders an `extra_model_paths.yaml` names, in ComfyUI's format.

    Each section has an optional `base_path` (`~` and `$VARS` expanded; relative to the file's
    folder), an optional `is_default` (its folders come first), and `kind: path` entries where a
    `|` block lists several paths, one a line. Kinds Easel does not load (configs,
    custom_nodes, hypernetworks, ...) are skipped; `clip` and `unet` are the legacy names of
    text_encoders and diffusion_models.
    """
    import yaml  # PyYAML: ComfyUI's own format, read with the library it uses

    from easel.models.errors import ModelError

    try:
        data = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ModelError(f"cannot read the model paths file {yaml_path}: {exc}") from exc
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ModelError(
            f"{yaml_path} is not in extra_model_paths.yaml format: expected "
            "sections such as `comfyui:` or `a111:` holding `kind: path` entries"
        )
    here = yaml_path.resolve().parent
    first: list[KindFolder] = []
    rest: list[KindFolder] = []
    for section, conf in data.items():
        if not isinstance(conf, dict):
            continue
        conf = dict(conf)
        base: Path | None = None
        raw_base = conf.pop("base_path", None)
        if isinstance(raw_base, str) and raw_base.strip():
            base = Path(os.path.expandvars(os.path.expanduser(raw_base.strip())))
            base = base if base.is_absolute() else here / base
        is_default = bool(conf.pop("is_default", False))
        conf.pop("base_paths", None)
        for key, value in conf.items():
            kind = canonical_kind(str(key))
            if kind is None or not isinstance(value, str):
                continue
            for line in value.splitlines():
                line = line.strip()
                if not line:
                    continue
                folder = Path(os.path.expandvars(os.path.expanduser(line)))
                if not folder.is_absolute():
                    folder = (base if base is not None else here) / folder
                target = first if is_default else rest
                target.append(KindFolder(kind, Path(os.path.normpath(folder))))
        log.debug("read section %s of %s", section, yaml_path)
    return first + rest


def expand(root: Path) -> list[KindFolder]:
    """The kind folders of one root (a models folder, a ComfyUI or A1111 install, or a YAML)."""
    if root.suffix.lower() in YAML_SUFFIXES:
        return read_extra_model_paths(root) if root.is_file() else []
    if is_comfyui_root(root):
        folders = models_folder(root / "models")
        extra = root / "extra_model_paths.yaml"
        if extra.is_file():  # ComfyUI reads it at start-up, so Easel does too
            folders.extend(read_extra_model_paths(extra))
        return folders
    if is_a1111_root(root):
        return [KindFolder(kind, root / rel) for kind, rels in A1111_LAYOUT.items() for rel in rels]
    return models_folder(root)


def comfyui_installs(roots: list[Path]) -> list[Path]:
    """ComfyUI installs the roots point into: the root itself, the folder above a `models/`
    root, the folder of an extra_model_paths.yaml and its sections' base paths."""
    found: list[Path] = []

    def add(path: Path) -> None:
        comfy = path / "comfy"
        if (
            path not in found
            and comfy.is_dir()
            and (
                (path / "main.py").is_file()
                or (path / "folder_paths.py").is_file()
                or (comfy / "sd1_tokenizer").is_dir()
            )
        ):
            found.append(path)

    for root in roots:
        if root.suffix.lower() in YAML_SUFFIXES:
            add(root.resolve().parent)
            if root.is_file():
                for folder in read_extra_model_paths(root):
                    for parent in list(folder.path.parents)[:3]:
                        add(parent)
            continue
        add(root)
        add(root.resolve().parent)
    return found


# -- the config file ------------------------------------------------------------------------
def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """$EASEL_CONFIG, else `config.toml` in the user config folder (~/.config/easel on Linux)."""
    env = os.environ if environ is None else environ
    if env.get("EASEL_CONFIG"):
        return Path(env["EASEL_CONFIG"]).expanduser()
    return Path(platformdirs.user_config_dir("easel", appauthor=False)) / CONFIG_FILE_NAME


def read_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The config file's contents ({} when there is none)."""
    from easel.models.errors import ModelError

    path = config_path(environ)
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ModelError(f"cannot read the Easel config file {path}: {exc}") from exc


def _paths(value: Any, where: Path) -> list[Path]:
    items = [value] if isinstance(value, str) else list(value or [])
    out = []
    for item in items:
        path = Path(os.path.expandvars(str(item))).expanduser()
        out.append(path if path.is_absolute() else where.parent / path)
    return out


def configured_roots(environ: Mapping[str, str] | None = None) -> list[Path]:
    """`[models] paths` of the config file: models folders, installs or YAML files."""
    models = read_config(environ).get("models", {})
    return _paths(models.get("paths"), config_path(environ)) if isinstance(models, dict) else []


def configured_tokenizer(family: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """A tokenizer folder the user named: $EASEL_CLIP_TOKENIZER / $EASEL_T5_TOKENIZER, or
    `[tokenizers] clip = "..."` / `t5 = "..."` in the config file."""
    env = os.environ if environ is None else environ
    value = env.get(f"EASEL_{family.upper()}_TOKENIZER")
    if value:
        return Path(value).expanduser()
    section = read_config(environ).get("tokenizers", {})
    if isinstance(section, dict) and section.get(family):
        return _paths(section[family], config_path(environ))[0]
    return None
