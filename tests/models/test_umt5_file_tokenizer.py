"""ComfyUI's UMT5 encoder files carry their SentencePiece model (`spiece_model`, a uint8
tensor); Easel tokenizes with it through transformers' T5Tokenizer. The SentencePiece model
here is trained by the test on a few sentences, so nothing is downloaded."""

from pathlib import Path

import pytest
import sentencepiece
import torch

from easel.models.wan_text import umt5_tokenizer

TEXT = [
    "a cat with a crown lounging on a velvet throne",
    "a bottle of foam surrounded by white round bubbles",
    "make it night and keep the characters unchanged",
    "a colossal spacecraft hovers above a desert in a sandstorm",
] * 20


@pytest.fixture(scope="module")
def spiece_model(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("spiece")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(TEXT))
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(folder / "sp"),
        vocab_size=40,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        minloglevel=2,
    )
    return (folder / "sp.model").read_bytes()


def test_the_files_sentencepiece_model_tokenizes_as_sentencepiece(
    spiece_model: bytes, tmp_path: Path
) -> None:
    spiece = torch.frombuffer(bytearray(spiece_model), dtype=torch.uint8)
    tokenizer = umt5_tokenizer(tmp_path / "umt5.safetensors", spiece, [tmp_path], 40)
    processor = sentencepiece.SentencePieceProcessor(model_proto=spiece_model)
    prompt = "a velvet cat above the desert at night"
    ids = tokenizer(prompt).input_ids
    assert ids == [*processor.encode(prompt), processor.eos_id()]
