"""Finds models on disk by kind, named as ComfyUI names them, without importing torch.

Kinds follow ComfyUI's models folder (checkpoints/, loras/, vae/, embeddings/, controlnet/,
upscale_models/, diffusion_models/ or unet/, text_encoders/ or clip/, clip_vision/). A model's
name is its path relative to its kind folder, with its extension and POSIX slashes
(`sdxl/juggernaut.safetensors`); a diffusers folder is named by its relative folder path.
Listing reads directories only: no model file is opened or hashed, and each folder's listing is
cached until the modification time of one of its directories changes.

`kind_names(kind)` and `resolve(kind, name)` are the API loaders use. `discover`,
`checkpoint_names` and `names_with_part` are the older names-without-extension view that the
checkpoint loader used before kinds; they stay for existing callers.
"""

from __future__ import annotations

import difflib
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from easel.models import model_paths
from easel.models.errors import ModelError
from easel.models.model_paths import KINDS as KINDS
from easel.models.model_paths import KindFolder, all_kinds, canonical_kind

log = logging.getLogger(__name__)

SAFE_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
GGUF_SUFFIXES = (".gguf",)
GGUF_KINDS = ("diffusion_models", "text_encoders")  # ComfyUI-GGUF's files
CONFIG_SUFFIX = ".config"  # `model.safetensors` takes its diffusers config from `model.config/`
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "zoo" / "weights"

# Sub-folders of an Easel bundle (the layout of easel-shapes) and what each provides.
BUNDLE_PARTS = ("clip", "prior", "decoder", "upscaler")
AVAILABLE_SHOWN = 12  # names an error lists before "and N more"


@dataclass(frozen=True)
class ModelEntry:
    """One model found on disk: a diffusers folder, a single file, or a part of a bundle."""

    name: str
    path: Path
    format: str  # "diffusers" (a folder) or "single_file"
    parts: tuple[str, ...] = field(default=())  # bundle parts present: clip, prior, ...
    kind: str = "checkpoints"
    pipeline: bool = False  # a whole diffusers pipeline (model_index.json or unet/)

    @property
    def is_pickle(self) -> bool:
        return self.format == "single_file" and self.path.suffix.lower() in PICKLE_SUFFIXES

    @property
    def file_format(self) -> str:
        """What `easel models` shows: diffusers, safetensors, pickle or gguf."""
        if self.format != "single_file":
            return "diffusers"
        suffix = self.path.suffix.lower()
        if suffix in PICKLE_SUFFIXES:
            return "pickle"
        return "gguf" if suffix in GGUF_SUFFIXES else "safetensors"


def model_roots(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Where models are looked for, first match wins: $EASEL_MODELS_DIR (os.pathsep separated),
    the config file's `[models] paths`, the user data folder's `models/`, then the bundled
    demo weights. Each root is a models folder, a ComfyUI or A1111 install, or an
    extra_model_paths.yaml file (see easel.models.model_paths)."""
    env = os.environ if environ is None else environ
    roots = [Path(p).expanduser() for p in env.get("EASEL_MODELS_DIR", "").split(os.pathsep) if p]
    roots.extend(model_paths.configured_roots(env))
    roots.append(Path(platformdirs.user_data_dir("easel", appauthor=False)) / "models")
    roots.append(BUNDLED_DIR)
    seen: list[Path] = []
    for root in roots:
        if root not in seen:
            seen.append(root)
    return seen


def _roots(roots: list[Path] | None, environ: Mapping[str, str] | None = None) -> list[Path]:
    return [Path(r) for r in roots] if roots is not None else model_roots(environ)


def kind_folders(kind: str | None = None, roots: list[Path] | None = None) -> list[KindFolder]:
    """The folders searched, in order (of one kind, or all), whether they exist or not."""
    folders = [f for root in _roots(roots) for f in model_paths.expand(root)]
    wanted = None if kind is None else _kind(kind)
    unique: list[KindFolder] = []
    for folder in folders:
        if (wanted is None or folder.kind == wanted) and folder not in unique:
            unique.append(folder)
    return unique


def _kind(kind: str) -> str:
    found = canonical_kind(kind)
    if found is None:
        raise ModelError(f"unknown model kind {kind!r}; kinds: {', '.join(all_kinds())}")
    return found


def _suffixes(kind: str) -> tuple[str, ...]:
    return SAFE_SUFFIXES + PICKLE_SUFFIXES + (GGUF_SUFFIXES if kind in GGUF_KINDS else ())


# -- listing one folder (cached) -----------------------------------------------------------
@dataclass(frozen=True)
class _Listing:
    entries: tuple[ModelEntry, ...]
    stamps: tuple[tuple[str, int], ...]  # every directory read, with its mtime_ns

    def fresh(self) -> bool:
        return all(_stamp(path) == stamp for path, stamp in self.stamps)


def _stamp(path: str) -> int:
    """A directory's mtime_ns; -1 while it does not exist (so its creation is noticed)."""
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


_cache: dict[KindFolder, _Listing] = {}
_cache_lock = threading.Lock()


def _read_dir(path: str, stamps: list[tuple[str, int]]) -> list[os.DirEntry[str]] | None:
    stamp = _stamp(path)
    stamps.append((path, stamp))
    try:
        with os.scandir(path) as it:
            return list(it)
    except OSError:
        return None


def _scan(folder: KindFolder) -> _Listing:
    """Entries of one kind folder: single files by suffix, and model folders (a diffusers
    pipeline, an Easel bundle, or a model folder with config.json), which are not entered."""
    entries: list[ModelEntry] = []
    stamps: list[tuple[str, int]] = []
    suffixes = _suffixes(folder.kind)
    visited: set[str] = set()

    def visit(path: str, prefix: str, depth: int, items: list[os.DirEntry[str]]) -> None:
        visited.add(os.path.realpath(path))
        for item in sorted(items, key=lambda e: e.name):
            name = item.name
            if name.startswith("."):
                continue
            try:
                is_dir = item.is_dir()
            except OSError:
                continue
            if is_dir:
                if name.endswith(CONFIG_SUFFIX) or (depth == 1 and name in folder.skip):
                    continue
                sub = _read_dir(item.path, stamps)
                if sub is None:
                    continue
                names = {e.name for e in sub}
                parts = tuple(
                    p
                    for p in BUNDLE_PARTS
                    if p in names and os.path.isdir(os.path.join(item.path, p))
                )
                pipeline = "model_index.json" in names
                if not pipeline and "unet" in names:
                    unet = os.path.join(item.path, "unet")
                    stamps.append((unet, _stamp(unet)))
                    pipeline = os.path.isfile(os.path.join(unet, "config.json"))
                if parts or pipeline or "config.json" in names:
                    entries.append(
                        ModelEntry(
                            prefix + name,
                            Path(item.path),
                            "diffusers",
                            parts,
                            folder.kind,
                            pipeline,
                        )
                    )
                elif depth < folder.depth and os.path.realpath(item.path) not in visited:
                    visit(item.path, prefix + name + "/", depth + 1, sub)
            elif os.path.splitext(name)[1].lower() in suffixes:
                try:
                    if not item.is_file():
                        continue
                except OSError:
                    continue
                entries.append(
                    ModelEntry(prefix + name, Path(item.path), "single_file", (), folder.kind)
                )

    top = _read_dir(str(folder.path), stamps)
    if top is not None:
        visit(str(folder.path), "", 1, top)
    return _Listing(tuple(entries), tuple(stamps))


def list_folder(folder: KindFolder) -> tuple[ModelEntry, ...]:
    """The models in one kind folder, from the cache while its directories are unchanged."""
    with _cache_lock:
        cached = _cache.get(folder)
    if cached is not None and cached.fresh():
        return cached.entries
    listing = _scan(folder)
    with _cache_lock:
        _cache[folder] = listing
    return listing.entries


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


# -- the API by kind -------------------------------------------------------------------------
def _offered(entry: ModelEntry) -> list[str]:
    """The names an entry is offered under in its kind (a bundle also offers its decoder)."""
    if entry.format == "single_file":
        return [entry.name]
    names = []
    if entry.kind != "checkpoints" or entry.pipeline:
        names.append(entry.name)
    if entry.kind == "checkpoints" and "decoder" in entry.parts:
        names.append(f"{entry.name}/decoder")
    return names


def entries(kind: str, roots: list[Path] | None = None) -> dict[str, ModelEntry]:
    """The models of one kind by name; a name in an earlier folder hides later ones.
    `<bundle>/decoder` maps to the bundle's entry."""
    found: dict[str, ModelEntry] = {}
    for folder in kind_folders(kind, roots):
        for entry in list_folder(folder):
            for name in _offered(entry):
                found.setdefault(name, entry)
    return found


def kind_names(kind: str, roots: list[Path] | None = None) -> list[str]:
    """The sorted names of one kind (`checkpoints`, `loras`, ...; `clip` and `unet` are
    accepted for text_encoders and diffusion_models), as a loader offers them."""
    return sorted(entries(kind, roots))


def _strip_suffix(name: str) -> str:
    stem, suffix = os.path.splitext(name)
    return stem if suffix.lower() in SAFE_SUFFIXES + PICKLE_SUFFIXES + GGUF_SUFFIXES else name


_warned: set[tuple[str, str]] = set()


def find(kind: str, name: str, roots: list[Path] | None = None) -> ModelEntry:
    """The entry a name means (`resolve` gives its path); ModelError when there is none."""
    kind = _kind(kind)
    wanted = name.replace("\\", "/").strip().lstrip("/")  # Windows workflows use backslashes
    found = entries(kind, roots)
    if wanted in found:
        return found[wanted]
    # Deprecated: Easel once named single files without their extension (`tiny-single`).
    legacy = [n for n in sorted(found) if _strip_suffix(n) == wanted and n != wanted]
    if legacy:
        if (kind, wanted) not in _warned:
            _warned.add((kind, wanted))
            log.warning(
                "model name %r is deprecated: use %r (names carry their extension)", name, legacy[0]
            )
        return found[legacy[0]]
    raise ModelError(_not_found(kind, name, wanted, sorted(found), roots))


def resolve(kind: str, name: str, roots: list[Path] | None = None) -> Path:
    """The path of the model `name` of `kind`; ModelError naming the kind, the name, every
    folder looked in, and close matches. `<bundle>/decoder` gives the decoder's folder."""
    entry = find(kind, name, roots)
    wanted = name.replace("\\", "/").strip().lstrip("/")
    if entry.format == "diffusers" and wanted == f"{entry.name}/decoder":
        return entry.path / "decoder"
    return entry.path


def _not_found(
    kind: str, name: str, wanted: str, names: list[str], roots: list[Path] | None
) -> str:
    folders = kind_folders(kind, roots)
    looked = (
        "; ".join(str(f.path) + ("" if f.path.is_dir() else " (missing)") for f in folders)
        or "no folder"
    )
    base = wanted.rsplit("/", 1)[-1]
    close = [n for n in names if n.rsplit("/", 1)[-1] == base]
    close += [
        n for n in difflib.get_close_matches(wanted, names, n=5, cutoff=0.6) if n not in close
    ]
    message = f"no {kind} model named {name!r}"
    if names:
        shown = names[:AVAILABLE_SHOWN]
        more = len(names) - len(shown)
        message += (
            "; available: "
            + ", ".join(shown)
            + (f" and {more} more (`easel models` lists them)" if more else "")
        )
    message += f". Looked in: {looked}."
    if close:
        message += " Close matches: " + ", ".join(close[:5]) + "."
    kinds = all_kinds()
    elsewhere = [
        f"{other}/{n}"
        for other in kinds
        if other != kind
        for n in kind_names(other, roots)
        if n == wanted or n.rsplit("/", 1)[-1] == base
    ]
    if elsewhere:
        message += (
            " Found under another kind: "
            + ", ".join(elsewhere[:3])
            + f" (move it into a {kinds[kind][0]}/ folder)."
        )
    if not names:
        message += (
            f" No {kind} model was found at all: put files in a {kinds[kind][0]}/ "
            "folder of a models folder, or point Easel at yours (--models-dir, "
            "EASEL_MODELS_DIR or the config file; a ComfyUI install or "
            "extra_model_paths.yaml works)."
        )
    return message


# -- the names-without-extension view used before kinds --------------------------------------
def _is_clip_folder(path: Path) -> bool:
    import json

    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "clip"
    except (OSError, ValueError):
        return False


def scan(root: Path, max_depth: int = 3) -> list[ModelEntry]:
    """The checkpoints-kind entries of one root, named by path without suffix (the old view)."""
    out = []
    for folder in kind_folders("checkpoints", [root]):
        for entry in list_folder(folder):
            name = entry.name if entry.format != "single_file" else _strip_suffix(entry.name)
            out.append(
                ModelEntry(name, entry.path, entry.format, entry.parts, entry.kind, entry.pipeline)
            )
    return out


def discover(
    environ: Mapping[str, str] | None = None, roots: list[Path] | None = None
) -> dict[str, ModelEntry]:
    """Checkpoint-kind models by their old name (without extension); earlier roots win."""
    found: dict[str, ModelEntry] = {}
    for root in _roots(roots, environ):
        for entry in scan(root):
            found.setdefault(entry.name, entry)
    return found


def checkpoint_names(
    environ: Mapping[str, str] | None = None, roots: list[Path] | None = None
) -> list[str]:
    """Old names a CheckpointLoader accepts: pipelines, single files, and `<bundle>/decoder`."""
    names: list[str] = []
    for name, entry in discover(environ, roots).items():
        if entry.format == "single_file" or entry.pipeline:
            names.append(name)
        if "decoder" in entry.parts:
            names.append(f"{name}/decoder")
    return sorted(names)


def names_with_part(
    part: str, environ: Mapping[str, str] | None = None, roots: list[Path] | None = None
) -> list[str]:
    """Names of the bundles that hold `part` ("clip", "prior", "upscaler"), and of CLIP
    model folders for "clip"."""
    names = []
    for name, entry in discover(environ, roots).items():
        if part in entry.parts or (
            part == "clip" and entry.format == "diffusers" and _is_clip_folder(entry.path)
        ):
            names.append(name)
    return sorted(names)
