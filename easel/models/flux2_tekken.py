"""Mistral's tekken tokenizer (the `tekken.json` ComfyUI stores inside its Flux.2 Mistral file as
the `tekken_model` tensor) as a Hugging Face fast tokenizer.

tekken is a tiktoken-style byte-level BPE: token byte strings with ranks, a split regex, and
special tokens that take the first ids (the normal tokens' ids are their rank plus the number of
special tokens). transformers' `TikTokenConverter` turns such ranks into a `tokenizers` BPE (it
recovers the merges from the ranks); only reading the ranks from tekken's JSON, instead of a
tiktoken file, and placing the special tokens at their ids is done here.
"""

from __future__ import annotations

import base64
import json
from typing import Any

TEKKEN_KEY = "tekken_model"
# Mistral-Small-3.x's chat and padding tokens (tekken's control tokens have these names).
BOS, EOS, UNK, PAD = "<s>", "</s>", "<unk>", "<pad>"


def read_tekken(data: Any) -> dict[str, Any]:
    """tekken's JSON from bytes, text or ComfyUI's uint8 tensor."""
    if hasattr(data, "numpy"):
        data = data.cpu().numpy().tobytes()
    if isinstance(data, (bytes, bytearray)):
        data = bytes(data).decode("utf-8")
    found = json.loads(data)
    if not isinstance(found, dict) or "vocab" not in found or "config" not in found:
        raise ValueError("not a tekken tokenizer (no vocab and config)")
    return found


def specials_of(tekken: dict[str, Any]) -> list[str]:
    """The special tokens by id: tekken's list, filled up to its number of special tokens
    with placeholders as mistral_common does (`<SPECIAL_i>`)."""
    config = tekken["config"]
    listed = {int(t["rank"]): str(t["token_str"]) for t in tekken.get("special_tokens", [])}
    count = int(config.get("default_num_special_tokens", len(listed)))
    count = max(count, max(listed, default=-1) + 1)
    return [listed.get(i, f"<SPECIAL_{i}>") for i in range(count)]


def tekken_tokenizer(data: Any, padding_side: str = "left") -> Any:
    """A transformers fast tokenizer equal to the tekken tokenizer in `data`: ids, merges and
    special tokens (`<s>` BOS, `</s>` EOS, `<pad>`). Padding is on the left, as ComfyUI's
    Mistral tokenizer pads."""
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    tekken = read_tekken(data)
    config = tekken["config"]
    specials = specials_of(tekken)
    limit = int(config.get("default_vocab_size", len(specials) + len(tekken["vocab"])))
    limit -= len(specials)  # normal tokens beyond the model's vocabulary are left out
    ranks = {
        base64.b64decode(t["token_bytes"]): int(t["rank"]) + len(specials)
        for t in tekken["vocab"]
        if int(t["rank"]) < limit
    }

    class TekkenConverter(TikTokenConverter):  # type: ignore[misc]
        def load_tiktoken_bpe(self, _: Any) -> dict[bytes, int]:  # type: ignore[override]
            return ranks

        def extract_vocab_merges_from_model(self, url: Any) -> Any:
            vocab, merges = super().extract_vocab_merges_from_model(url)
            vocab.update({token: index for index, token in enumerate(specials)})
            return vocab, merges

    converter = TekkenConverter(vocab_file=None, pattern=config["pattern"])
    backend = converter.converted()
    backend.add_special_tokens([AddedToken(s, normalized=False, special=True) for s in specials])
    named = {
        name: token
        for name, token in (("bos_token", BOS), ("eos_token", EOS), ("unk_token", UNK))
        if token in specials
    }
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD if PAD in specials else named.get("eos_token"),
        padding_side=padding_side,
        **named,
    )
