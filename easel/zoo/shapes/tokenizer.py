"""Trains a byte-level BPE tokenizer on the captions and saves it in CLIP's format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from easel.zoo.shapes.configs import MAX_TOKENS

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"


def _bytes_to_unicode() -> list[str]:
    """GPT-2 / CLIP byte symbols in CLIP's vocabulary order (printable bytes first)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def train_clip_tokenizer(captions: list[str], out_dir: Path, merges_limit: int = 2000) -> Any:
    """Train BPE merges with `tokenizers` and save a `CLIPTokenizer` to out_dir.

    The vocabulary is laid out as CLIP's: every byte symbol, every byte symbol with `</w>`,
    one token per merge in merge order, then the start and end tokens.
    """
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers import CLIPTokenizer

    symbols = _bytes_to_unicode()
    bpe = Tokenizer(BPE(end_of_word_suffix="</w>", continuing_subword_prefix=""))
    bpe.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    base = len(symbols) * 2
    trainer = BpeTrainer(
        vocab_size=base + merges_limit,
        initial_alphabet=symbols,
        end_of_word_suffix="</w>",
        continuing_subword_prefix="",
        show_progress=False,
        special_tokens=[],
    )
    bpe.train_from_iterator(captions, trainer)
    merges = json.loads(bpe.to_str())["model"]["merges"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]
    vocab: dict[str, int] = {}
    for token in [*symbols, *(s + "</w>" for s in symbols), *("".join(m) for m in merges)]:
        vocab.setdefault(token, len(vocab))
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        model_max_length=MAX_TOKENS,
    )
    tokenizer.save_pretrained(out_dir)
    # Also write CLIP's slow-tokenizer files so any loader (or older transformers) can use them.
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out_dir / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n"
    )
    return CLIPTokenizer.from_pretrained(out_dir)
