"""HiDream's text side without the sampler: Llama's tokenizer is found on the machine (never
downloaded) and its absence is an error that names every place looked in; each encoder's
embeddings equal HiDreamImagePipeline's encode_prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.fixtures import hidream_family

hidream_root = hidream_family.hidream_root
hidream_models = hidream_family.hidream_models
hidream_manager = hidream_family.hidream_manager


def test_no_llama_tokenizer_is_an_error_naming_where_it_looked(
    hidream_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from easel.models.errors import ModelError
    from easel.models.hidream_loading import llama_tokenizer
    from easel.models.manager import ModelManager

    _, files = hidream_models
    monkeypatch.delenv("EASEL_LLAMA_TOKENIZER", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("EASEL_CONFIG", str(tmp_path / "none.toml"))
    comfy = tmp_path / "ComfyUI"
    (comfy / "models").mkdir(parents=True)
    (comfy / "comfy").mkdir()
    (comfy / "main.py").write_text("# a ComfyUI install without the Llama tokenizer\n")
    manager = ModelManager([comfy / "models"], device="cpu", dtype=torch.float32)
    with pytest.raises(ModelError) as caught:
        llama_tokenizer(files["llama"], manager)
    message = str(caught.value)
    assert files["llama"].name in message
    assert str(comfy / "comfy" / "text_encoders" / "llama_tokenizer") in message
    assert str(tmp_path / "hub") in message
    assert "EASEL_LLAMA_TOKENIZER" in message


def test_a_configured_llama_tokenizer_folder_is_used(
    hidream_models: Any, hidream_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from easel.models.hidream_loading import llama_tokenizer
    from easel.models.manager import ModelManager

    _, files = hidream_models
    folder = hidream_root / "diffusers" / "hidream_i1_dev" / "tokenizer_4"
    monkeypatch.setenv("EASEL_LLAMA_TOKENIZER", str(folder))
    manager = ModelManager([tmp_path], device="cpu", dtype=torch.float32)
    tokenizer = llama_tokenizer(files["llama"], manager)
    assert tokenizer.pad_token == tokenizer.eos_token == "<|eot_id|>"
    assert tokenizer("a red circle").input_ids[0] == tokenizer.bos_token_id


def test_each_encoder_equals_the_pipelines_encode_prompt(
    hidream_models: Any, hidream_manager: Any
) -> None:
    from easel.models import hidream_loading
    from easel.models.text import encode_prompts

    pipe, files = hidream_models
    clip = hidream_loading.hidream_clip(
        "clip",
        [files["llama"], files["t5"], files["clip_g"], files["clip_l"]],  # any order
        hidream_manager,
    )
    texts = {"l": "a red circle", "g": "a blue square", "t5": "a green tree", "llama": "a cat"}
    ours = encode_prompts(clip, texts).conditioning
    t5, _, llama, _, pooled, _ = pipe.encode_prompt(
        prompt=texts["l"],
        prompt_2=texts["g"],
        prompt_3=texts["t5"],
        prompt_4=texts["llama"],
        do_classifier_free_guidance=False,
        device="cpu",
        max_sequence_length=128,
    )
    assert ours["t5"].shape == t5.shape and ours["llama"].shape == llama.shape
    assert (ours["t5"] - t5).abs().max().item() <= 1e-5
    assert (ours["llama"] - llama).abs().max().item() <= 1e-5
    assert (ours["pooled"] - pooled).abs().max().item() <= 1e-5


def test_llama_pads_with_the_end_of_turn_token(
    hidream_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Llama 3 tokenizer whose end token is <|end_of_text|> (ComfyUI's llama_tokenizer) still
    pads HiDream's prompts with <|eot_id|>, the token HiDream's own tokenizer pads with."""
    import json
    import shutil

    from easel.models.hidream_loading import llama_tokenizer
    from easel.models.manager import ModelManager

    folder = tmp_path / "llama_tokenizer"
    shutil.copytree(hidream_root / "diffusers" / "hidream_i1_dev" / "tokenizer_4", folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["eos_token"] = "<|end_of_text|>"
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    monkeypatch.setenv("EASEL_LLAMA_TOKENIZER", str(folder))
    manager = ModelManager([tmp_path], device="cpu", dtype=torch.float32)
    tokenizer = llama_tokenizer(tmp_path / "llama.safetensors", manager)
    assert tokenizer.eos_token == "<|end_of_text|>"
    assert tokenizer.pad_token == "<|eot_id|>"
