"""Finding the standard CLIP and T5 tokenizers for single-file checkpoints, never downloading."""

from __future__ import annotations

import gzip
import importlib
import json
import shutil
import sys
from pathlib import Path

import pytest

from easel.models import tokenizers
from easel.models.errors import ModelError
from tests.fixtures.tiny_models import write_tokenizer

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "tokenizers"
CLIP_FILES = SHARED / "clip"
T5_FILES = SHARED / "t5"


def copy_tokenizer(source: Path, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        shutil.copy(item, target / item.name)
    return target


def isolated(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment with an empty hub cache, no config file and a private cache folder."""
    return {
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "EASEL_CACHE_DIR": str(tmp_path / "cache"),
        "EASEL_CONFIG": str(tmp_path / "no-config.toml"),
        **extra,
    }


def reference_clip(pad: str = "<|endoftext|>"):  # type: ignore[no-untyped-def]
    from transformers import CLIPTokenizer

    return CLIPTokenizer(
        str(CLIP_FILES / "vocab.json"),
        str(CLIP_FILES / "merges.txt"),
        pad_token=pad,
        model_max_length=77,
    )


def comfyui_install(root: Path, t5: bool = False) -> Path:
    (root / "models" / "checkpoints").mkdir(parents=True)
    (root / "main.py").write_text("")
    copy_tokenizer(CLIP_FILES, root / "comfy" / "sd1_tokenizer")
    if t5:
        copy_tokenizer(T5_FILES, root / "comfy" / "t5_tokenizer")
    return root


@pytest.fixture
def no_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine without open-clip-torch or clip-anytorch."""
    monkeypatch.setattr(tokenizers, "package_bpe_files", lambda: iter(()))


def test_bpe_file_of_an_installed_package_gives_exactly_the_standard_vocabulary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A package laid out as open_clip is, whose import would fail: it must only be located.
    package = tmp_path / "site" / "open_clip"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('open_clip must not be imported')\n")
    merges = (CLIP_FILES / "merges.txt").read_text(encoding="utf-8").split("\n")[1:-1]
    # The original file: a header line, the merges CLIP uses, then many it leaves out.
    lines = ['"bpe_simple_vocab_16e6.txt#version: 0.2', *merges, "x y", "xy z</w>"]
    with gzip.open(package / tokenizers.CLIP_BPE_FILE, "wt", encoding="utf-8") as stream:
        stream.write("\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    folder, where = tokenizers.find_clip_tokenizer([tmp_path / "models"], isolated(tmp_path))
    assert folder is not None and "open-clip-torch package" in where
    assert "open_clip" not in sys.modules
    assert json.loads((folder / "vocab.json").read_text(encoding="utf-8")) == json.loads(
        (CLIP_FILES / "vocab.json").read_text(encoding="utf-8")
    )
    assert (folder / "merges.txt").read_text(encoding="utf-8") == (
        CLIP_FILES / "merges.txt"
    ).read_text(encoding="utf-8")
    tokenizer = tokenizers.clip_tokenizer(
        "l", roots=[tmp_path / "models"], environ=isolated(tmp_path)
    )
    text = "a photograph of an astronaut riding a horse, (detailed:1.2)"
    assert tokenizer(text).input_ids == reference_clip()(text).input_ids


def test_comfyui_install_gives_clip_l_and_g_with_their_padding(
    tmp_path: Path, no_packages: None
) -> None:
    comfy = comfyui_install(tmp_path / "ComfyUI")
    env = isolated(tmp_path)
    folder, where = tokenizers.find_clip_tokenizer([comfy], env)
    assert folder == comfy / "comfy" / "sd1_tokenizer" and "ComfyUI" in where
    clip_l = tokenizers.clip_tokenizer("l", roots=[comfy / "models"], environ=env)
    clip_g = tokenizers.clip_tokenizer("g", roots=[comfy / "models"], environ=env)
    text = "a red circle"
    ids_l = clip_l(text, padding="max_length", max_length=77).input_ids
    ids_g = clip_g(text, padding="max_length", max_length=77).input_ids
    assert ids_l == reference_clip()(text, padding="max_length", max_length=77).input_ids
    assert ids_l[:5] == ids_g[:5] == [49406, 320, 736, 7117, 49407]
    assert ids_l[5:] == [49407] * 72  # CLIP-L pads with <|endoftext|>
    assert ids_g[5:] == [0] * 72  # SDXL's CLIP-G (diffusers tokenizer_2) pads with "!"


def test_diffusers_folder_in_the_models_roots_but_never_a_tiny_vocabulary(
    tmp_path: Path, no_packages: None
) -> None:
    tiny = tmp_path / "tiny" / "tiny-pipeline"
    (tiny / "unet").mkdir(parents=True)
    (tiny / "model_index.json").write_text("{}")
    write_tokenizer(tiny / "tokenizer")  # a real CLIPTokenizer over a tiny vocabulary
    models = tmp_path / "models"
    pipe = models / "checkpoints" / "sdxl-base"
    pipe.mkdir(parents=True)
    (pipe / "model_index.json").write_text("{}")
    copy_tokenizer(CLIP_FILES, pipe / "tokenizer_2")
    env = isolated(tmp_path)
    # the tiny pipeline comes first and has a tokenizer/, but not the standard vocabulary
    folder, where = tokenizers.find_clip_tokenizer([tiny.parent, models], env)
    assert folder == pipe / "tokenizer_2" and "model folder" in where


def test_hugging_face_cache_known_repository_and_any_snapshot(
    tmp_path: Path, no_packages: None
) -> None:
    hub = tmp_path / "hub"
    repo = hub / "models--openai--clip-vit-large-patch14"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    copy_tokenizer(CLIP_FILES, repo / "snapshots" / "abc123")
    env = isolated(tmp_path)
    folder, where = tokenizers.find_clip_tokenizer([tmp_path / "models"], env)
    assert folder == repo / "snapshots" / "abc123" and "Hugging Face cache" in where

    shutil.rmtree(repo)
    other = hub / "models--someone--my-sdxl" / "snapshots" / "f00" / "tokenizer"
    copy_tokenizer(CLIP_FILES, other)
    folder, _ = tokenizers.find_clip_tokenizer([tmp_path / "models"], env)
    assert folder == other


def test_a_configured_folder_comes_first(tmp_path: Path, no_packages: None) -> None:
    mine = copy_tokenizer(CLIP_FILES, tmp_path / "my-clip")
    comfy = comfyui_install(tmp_path / "ComfyUI")
    env = isolated(tmp_path, EASEL_CLIP_TOKENIZER=str(mine))
    folder, where = tokenizers.find_clip_tokenizer([comfy], env)
    assert folder == mine and "configured" in where


def test_no_tokenizer_anywhere_says_what_was_found_where_it_looked_and_what_to_do(
    tmp_path: Path, no_packages: None
) -> None:
    comfy = tmp_path / "ComfyUI"
    (comfy / "comfy").mkdir(parents=True)
    (comfy / "models" / "checkpoints").mkdir(parents=True)
    (comfy / "main.py").write_text("")
    env = isolated(tmp_path, EASEL_CLIP_TOKENIZER=str(tmp_path / "nowhere"))
    with pytest.raises(ModelError) as caught:
        tokenizers.clip_tokenizer(
            checkpoint="checkpoints/sd15.safetensors",
            contents="SD1.x UNet, VAE and CLIP-L text encoder weights",
            roots=[comfy],
            environ=env,
        )
    message = str(caught.value)
    assert message.startswith(
        "checkpoints/sd15.safetensors holds no tokenizer (found in it: "
        "SD1.x UNet, VAE and CLIP-L text encoder weights)"
    )
    for place in (
        str(tmp_path / "nowhere"),
        str(comfy / "comfy" / "sd1_tokenizer"),
        str(tmp_path / "hub"),
        "open-clip-torch",
        "clip-anytorch",
    ):
        assert place in message
    assert "pip install --no-deps open-clip-torch" in message
    assert "--models-dir /path/to/ComfyUI" in message


def test_t5_from_a_comfyui_install_and_a_clear_error_without(tmp_path: Path) -> None:
    from transformers import T5TokenizerFast

    comfy = comfyui_install(tmp_path / "ComfyUI", t5=True)
    env = isolated(tmp_path)
    tokenizer = tokenizers.t5_tokenizer(roots=[comfy], environ=env, max_length=256)
    reference = T5TokenizerFast.from_pretrained(str(T5_FILES))
    text = "a cat holding a sign that says hello world"
    assert tokenizer(text).input_ids == reference(text).input_ids
    assert tokenizer.model_max_length == 256
    with pytest.raises(ModelError, match=r"flux.safetensors holds no tokenizer.*T5 tokenizer"):
        tokenizers.t5_tokenizer(
            checkpoint="flux.safetensors", roots=[tmp_path / "models"], environ=env
        )
