"""Finds the standard CLIP and T5 tokenizers on this machine, never downloading, for single files.

A single-file checkpoint holds weights but no tokenizer. The CLIP BPE vocabulary is the same for
every Stable Diffusion text encoder (CLIP-L, OpenCLIP ViT-H and bigG), so any copy of it on the
machine serves. Places are tried in this order, and every one is named when none has it:

1. a tokenizer folder the user configured ($EASEL_CLIP_TOKENIZER / $EASEL_T5_TOKENIZER, or
   `[tokenizers]` in the config file, see easel.models.model_paths);
2. a ComfyUI install the models roots point into (`comfy/sd1_tokenizer/`,
   `comfy/t5_tokenizer/`);
3. diffusers and transformers folders in the models roots (`tokenizer/`, `tokenizer_2/`, ...);
4. the Hugging Face cache already on disk (known repositories first, then any snapshot);
5. an installed package that ships the CLIP BPE merges: open_clip (`open-clip-torch`) or
   `clip` (`clip-anytorch`, OpenAI's CLIP). They are located with importlib.util.find_spec and
   never imported (they import torchvision), and the vocabulary is built from their merges list
   as the original CLIP tokenizer builds it.

A candidate must be the standard vocabulary (49,408 tokens ending in <|endoftext|>): the tiny
tokenizers of test and demo models never stand in for it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import platformdirs

from easel.models import discovery, model_paths
from easel.models.errors import ModelError

CLIP_VOCAB_SIZE = 49408
CLIP_END = "<|endoftext|>"
CLIP_START = "<|startoftext|>"
CLIP_MAX_LENGTH = 77
# The BPE merges that CLIP uses: lines 1 .. 48894 of bpe_simple_vocab_16e6.txt (the file lists
# more; CLIP keeps 49152 - 256 - 2 of them so the vocabulary is 49408 tokens).
CLIP_MERGES = CLIP_VOCAB_SIZE - 512 - 2
CLIP_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
# (import name, pip package) of packages shipping the CLIP BPE file in their top-level folder.
CLIP_PACKAGES = (("open_clip", "open-clip-torch"), ("clip", "clip-anytorch"))
# Hugging Face repositories whose files hold the CLIP tokenizer, and where.
CLIP_HUB_FILES = (
    ("openai/clip-vit-large-patch14", ""),
    ("stabilityai/stable-diffusion-xl-base-1.0", "tokenizer/"),
    ("stabilityai/stable-diffusion-xl-base-1.0", "tokenizer_2/"),
    ("stable-diffusion-v1-5/stable-diffusion-v1-5", "tokenizer/"),
    ("runwayml/stable-diffusion-v1-5", "tokenizer/"),
    ("CompVis/stable-diffusion-v1-4", "tokenizer/"),
    ("stabilityai/stable-diffusion-2-1", "tokenizer/"),
    ("stabilityai/stable-diffusion-2-1-base", "tokenizer/"),
    ("openai/clip-vit-base-patch32", ""),
    ("laion/CLIP-ViT-bigG-14-laion2B-39B-b160k", ""),
)
T5_HUB_FILES = (
    ("google/t5-v1_1-xxl", ""),
    ("black-forest-labs/FLUX.1-dev", "tokenizer_2/"),
    ("black-forest-labs/FLUX.1-schnell", "tokenizer_2/"),
    ("stabilityai/stable-diffusion-3-medium-diffusers", "tokenizer_3/"),
    ("stabilityai/stable-diffusion-3.5-large", "tokenizer_3/"),
    ("google/flan-t5-xxl", ""),
)
TOKENIZER_SUBFOLDERS = ("tokenizer", "tokenizer_2", "tokenizer_3", "")
T5_FILES = ("tokenizer.json", "spiece.model")


# -- what counts as the standard tokenizer -----------------------------------------------------
def is_clip_folder(folder: Path) -> bool:
    """A folder holding the standard CLIP BPE tokenizer (vocab.json + merges.txt)."""
    vocab, merges = folder / "vocab.json", folder / "merges.txt"
    try:
        if not merges.is_file() or vocab.stat().st_size < 500_000:  # cheap: tiny vocabs out
            return False
        data = json.loads(vocab.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(data, dict)
        and len(data) == CLIP_VOCAB_SIZE
        and data.get(CLIP_END) == CLIP_VOCAB_SIZE - 1
    )


def is_t5_folder(folder: Path) -> bool:
    """A folder holding a T5 tokenizer (tokenizer.json or spiece.model, T5 tokenizer class)."""
    if not any((folder / name).is_file() for name in T5_FILES):
        return False
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return (folder / "spiece.model").is_file()
    try:
        cls = str(json.loads(config.read_text(encoding="utf-8")).get("tokenizer_class", ""))
    except (OSError, ValueError):
        return False
    return cls.startswith("T5")


# -- building the vocabulary from the original BPE file ----------------------------------------
def _bytes_to_unicode() -> dict[int, str]:
    try:
        from transformers.convert_slow_tokenizer import bytes_to_unicode
    except ImportError:  # older transformers kept it beside the GPT-2 tokenizer
        from transformers.models.gpt2.tokenization_gpt2 import (  # type: ignore[attr-defined,no-redef]
            bytes_to_unicode,
        )
    return dict(bytes_to_unicode())


def clip_vocab_from_bpe(bpe_file: Path) -> tuple[dict[str, int], list[str]]:
    """The vocabulary and merges of the CLIP tokenizer, built from `bpe_simple_vocab_16e6.txt.gz`
    as OpenAI's `clip/simple_tokenizer.py` builds them: the 256 byte characters, the same with
    `</w>`, one token per merge, then <|startoftext|> and <|endoftext|>. (No library exposes this
    step: transformers reads vocab.json/merges.txt, which this turns the file into.)"""
    with gzip.open(bpe_file, "rt", encoding="utf-8") as stream:
        lines = stream.read().split("\n")
    merges = lines[1 : CLIP_MERGES + 1]
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars]
    tokens += ["".join(merge.split()) for merge in merges]
    tokens += [CLIP_START, CLIP_END]
    return {token: i for i, token in enumerate(tokens)}, merges


def _materialise(bpe_file: Path, environ: Mapping[str, str]) -> Path:
    """A vocab.json/merges.txt folder made from a BPE file, kept in Easel's cache folder."""
    stat = bpe_file.stat()
    digest = hashlib.sha256(
        f"{bpe_file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()
    ).hexdigest()[:16]
    cache = (
        Path(
            environ.get("EASEL_CACHE_DIR") or platformdirs.user_cache_dir("easel", appauthor=False)
        )
        / "tokenizers"
    )
    target = cache / f"clip-bpe-{digest}"
    if (target / "merges.txt").is_file():
        return target
    vocab, merges = clip_vocab_from_bpe(bpe_file)
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=".clip-bpe-"))
    (staging / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (staging / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8"
    )
    try:
        staging.rename(target)
    except OSError:  # another process made it first
        for child in staging.iterdir():
            child.unlink()
        staging.rmdir()
    return target


def package_bpe_files() -> Iterator[tuple[str, Path]]:
    """(package, BPE file) of installed packages shipping the CLIP merges, found by
    importlib.util.find_spec without importing them."""
    for module, package in CLIP_PACKAGES:
        try:
            spec = find_spec(module)
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.submodule_search_locations:
            continue
        for location in spec.submodule_search_locations:
            candidate = Path(location) / CLIP_BPE_FILE
            if candidate.is_file():
                yield package, candidate


# -- where to look ------------------------------------------------------------------------------
def hub_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The Hugging Face hub cache, from the same variables huggingface_hub reads."""
    env = os.environ if environ is None else environ
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(name):
            return Path(env[name]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "huggingface" / "hub"


def _hub_folders(cache: Path, known: tuple[tuple[str, str], ...], probe: str) -> Iterator[Path]:
    """Tokenizer folders in the hub cache: known repositories first, then any snapshot."""
    from huggingface_hub import try_to_load_from_cache

    for repo, sub in known:
        found = try_to_load_from_cache(repo, sub + probe, cache_dir=str(cache))
        if isinstance(found, str):
            yield Path(found).parent
    if cache.is_dir():
        for snapshot in sorted(cache.glob("models--*/snapshots/*")):
            for sub in TOKENIZER_SUBFOLDERS:
                yield snapshot / sub if sub else snapshot


def _model_folders(roots: list[Path]) -> Iterator[Path]:
    """Folders of diffusers pipelines and transformers models found in the models roots."""
    for kind in ("checkpoints", "text_encoders", "clip_vision"):
        for entry in discovery.entries(kind, roots).values():
            if entry.format != "diffusers":
                continue
            for sub in TOKENIZER_SUBFOLDERS:
                yield entry.path / sub if sub else entry.path


def _candidates(
    family: str, roots: list[Path], environ: Mapping[str, str]
) -> Iterator[tuple[str, Path]]:
    """(place described for a message, folder) in search order."""
    configured = model_paths.configured_tokenizer(family, environ)
    if configured is not None:
        yield "the configured tokenizer folder", configured
        yield "the configured tokenizer folder", configured / "tokenizer"
    comfy_folder = "sd1_tokenizer" if family == "clip" else "t5_tokenizer"
    for install in model_paths.comfyui_installs(roots):
        yield "a ComfyUI install", install / "comfy" / comfy_folder
    for folder in _model_folders(roots):
        yield "a model folder in the models roots", folder
    probe = "vocab.json" if family == "clip" else "tokenizer_config.json"
    known = CLIP_HUB_FILES if family == "clip" else T5_HUB_FILES
    cache = hub_cache_dir(environ)
    for folder in _hub_folders(cache, known, probe):
        yield "the Hugging Face cache", folder


def _search(
    family: str, roots: list[Path] | None, environ: Mapping[str, str] | None
) -> tuple[Path | None, str, list[str]]:
    """(folder, where it was found, the places looked in) for "clip" or "t5"."""
    env = os.environ if environ is None else environ
    root_list = discovery.model_roots(env) if roots is None else [Path(r) for r in roots]
    accept = is_clip_folder if family == "clip" else is_t5_folder
    looked: list[str] = []
    seen: set[Path] = set()
    for where, folder in _candidates(family, root_list, env):
        if folder in seen:
            continue
        seen.add(folder)
        if accept(folder):
            return folder, f"{where} ({folder})", looked
        named = where in ("the configured tokenizer folder", "a ComfyUI install")
        if named or (where == "a model folder in the models roots" and folder.is_dir()):
            looked.append(f"{where}: {folder}" + ("" if folder.is_dir() else " (missing)"))
    looked.append(f"the Hugging Face cache: {hub_cache_dir(env)}")
    looked.append("the models roots: " + ", ".join(str(r) for r in root_list))
    if family == "clip":
        for package, bpe in package_bpe_files():
            return _materialise(bpe, env), f"the {package} package ({bpe})", looked
        looked.append(
            "installed packages: " + ", ".join(p for _, p in CLIP_PACKAGES) + " (none installed)"
        )
    return None, "", looked


def find_clip_tokenizer(
    roots: list[Path] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Path | None, str]:
    """The folder holding the standard CLIP vocab.json/merges.txt and where it came from."""
    folder, where, _ = _search("clip", roots, environ)
    return folder, where


def find_t5_tokenizer(
    roots: list[Path] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Path | None, str]:
    folder, where, _ = _search("t5", roots, environ)
    return folder, where


def _missing(
    family: str, checkpoint: Path | str | None, contents: str, looked: list[str]
) -> ModelError:
    what = "the standard CLIP tokenizer" if family == "clip" else "a T5 tokenizer"
    head = f"{checkpoint} holds no tokenizer" if checkpoint else "a model needs a tokenizer"
    if contents:
        head += f" (found in it: {contents})"
    steps = [
        "point Easel at a ComfyUI install (--models-dir /path/to/ComfyUI, or its "
        "extra_model_paths.yaml)",
        "put a diffusers model folder holding tokenizer/ in the models folder",
        f"name a tokenizer folder with EASEL_{family.upper()}_TOKENIZER or [tokenizers] "
        f"{family} in the config file",
    ]
    if family == "clip":
        steps.append(
            "or `pip install --no-deps open-clip-torch` (it ships the CLIP "
            "vocabulary; Easel only reads that file)"
        )
    return ModelError(
        f"{head}, and {what} was not found on this machine (Easel never "
        "downloads). Looked in: " + "; ".join(looked) + ". To fix: " + "; ".join(steps) + "."
    )


def clip_tokenizer(
    key: str = "l",
    *,
    checkpoint: Path | str | None = None,
    contents: str = "",
    roots: list[Path] | None = None,
    environ: Mapping[str, str] | None = None,
    max_length: int = CLIP_MAX_LENGTH,
) -> Any:
    """The standard CLIP tokenizer for text encoder `key`: "l" pads with <|endoftext|>, "g"
    (SDXL's OpenCLIP bigG, diffusers' tokenizer_2) pads with "!" (id 0). `checkpoint` and
    `contents` (what the file held) go into the error when no tokenizer is found."""
    import transformers

    folder, _, looked = _search("clip", roots, environ)
    if folder is None:
        raise _missing("clip", checkpoint, contents, looked)
    pad = "!" if key == "g" else CLIP_END
    # transformers 5 names the Rust-backed class CLIPTokenizer; 4.x calls it ...Fast
    cls = getattr(transformers, "CLIPTokenizerFast", transformers.CLIPTokenizer)
    return cls.from_pretrained(
        str(folder), pad_token=pad, model_max_length=max_length, local_files_only=True
    )


def t5_tokenizer(
    *,
    checkpoint: Path | str | None = None,
    contents: str = "",
    roots: list[Path] | None = None,
    environ: Mapping[str, str] | None = None,
    max_length: int | None = None,
) -> Any:
    """A T5 tokenizer found the same way (ComfyUI's comfy/t5_tokenizer, diffusers folders,
    the Hugging Face cache)."""
    import transformers

    folder, _, looked = _search("t5", roots, environ)
    if folder is None:
        raise _missing("t5", checkpoint, contents, looked)
    kwargs: dict[str, Any] = {"local_files_only": True}
    if max_length is not None:
        kwargs["model_max_length"] = max_length
    cls = getattr(transformers, "T5TokenizerFast", None) or transformers.T5Tokenizer
    return cls.from_pretrained(str(folder), **kwargs)
