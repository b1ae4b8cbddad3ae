"""ComfyUI's Flux.2 Mistral files carry their tokenizer (tekken, as `tekken_model`): Easel reads
it, so such a file needs nothing beside it. The tiny tekken here is made from the tests' BPE
tokenizer, whose own tokenization is the reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import flux2_family

flux2_root = flux2_family.flux2_root
flux2_models = flux2_family.flux2_models
flux2_manager = flux2_family.flux2_manager

TEXTS = [
    "a red circle on a blue square",
    "<s>[SYSTEM_PROMPT]You are an AI.[/SYSTEM_PROMPT][INST]a small green triangle[/INST]",
    "Ünïcödé, digits 12345 and   spaces\nnew lines",
]


def test_tekken_tokenizer_gives_the_ids_of_the_bpe_it_was_made_from(flux2_models: Any) -> None:
    from easel.models.flux2_tekken import tekken_tokenizer

    reference = flux2_models["dev"].pipe.tokenizer
    ours = tekken_tokenizer(flux2_family.tekken_json(reference))
    for text in TEXTS:
        expected = reference(text, add_special_tokens=False).input_ids
        assert ours(text, add_special_tokens=False).input_ids == expected, text
    assert (ours.bos_token_id, ours.pad_token_id) == (
        reference.bos_token_id,
        reference.pad_token_id,
    )
    assert ours.padding_side == "left"  # as ComfyUI's Mistral tokenizer pads


def test_a_comfyui_mistral_file_brings_its_own_tokenizer(
    flux2_root: Path, flux2_models: Any, flux2_manager: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no tokenizer folder anywhere, CLIPLoader type flux2 reads the file's tekken and
    encodes as Flux2Pipeline does with that tokenizer (padded on the left)."""
    from transformers import AutoTokenizer

    from easel.models import family_files
    from easel.models.text import encode_text

    monkeypatch.delenv("EASEL_MISTRAL_TOKENIZER", raising=False)
    path = flux2_root / "models" / "text_encoders" / "mistral-tekken-tiny.safetensors"
    clip = family_files.load_clip("flux2", path.name, [path], flux2_manager)
    ours = encode_text(clip, "a red circle").conditioning["embeds"]
    pipe = flux2_models["dev"].pipe
    left = AutoTokenizer.from_pretrained(
        str(flux2_family.mistral_folder(flux2_root)), padding_side="left"
    )
    theirs, _ = type(pipe)(**{**pipe.components, "tokenizer": left}).encode_prompt(
        "a red circle", device="cpu"
    )
    assert (ours - theirs).abs().max().item() <= 1e-5


def test_an_unreadable_tekken_is_reported(tmp_path: Path) -> None:
    import torch

    from easel.models.errors import ModelError
    from easel.models.flux2_text_encoders import tokenizer

    state = {"tekken_model": torch.tensor(list(b"{not json"), dtype=torch.uint8)}
    with pytest.raises(ModelError, match="tekken_model that is not a tokenizer"):
        tokenizer("mistral", tmp_path / "mistral.safetensors", state, [tmp_path], environ={})
