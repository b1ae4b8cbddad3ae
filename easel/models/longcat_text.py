"""LongCat-Image's text conditioning, as LongCatImagePipeline makes it (`_encode_prompt`): the
prompt's tokens (text inside quotes spelled one character at a time, LongCat's
`split_quotation`), cut at and padded to 512, between the chat template's prefix and suffix;
Qwen2.5-VL's last hidden states with the prefix and suffix dropped, the padding kept (the
transformer sees all 512 positions, unmasked).

The pipeline's prompt rewriting (Qwen2.5-VL generating a longer prompt first) is not done, as
ComfyUI does not do it either: the text is the literal prompt. ComfyUI does not pad the prompt
(its image positions start after the prompt's own length); Easel follows the pipeline.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from easel.models.families.longcat import (
    EDIT_PREFIX,
    IMAGE_PAD,
    MAX_TOKENS,
    PROMPT_PREFIX,
    PROMPT_SUFFIX,
)

QUOTES = (("'", "'"), ('"', '"'), ("\u2018", "\u2019"), ("\u201c", "\u201d"))
QUOTED = "|".join(re.escape(a) + "[^" + re.escape(a + b) + "]*?" + re.escape(b) for a, b in QUOTES)
WORD_APOSTROPHE = re.compile(r"[a-zA-Z]+'[a-zA-Z]+")  # "don't": not a quotation


def split_quotation(prompt: str) -> list[tuple[str, bool]]:
    """(piece, quoted) pieces of `prompt`, as LongCat's pipeline splits it: text between a pair
    of quotes is one quoted piece (quotes included); apostrophes inside words do not quote."""
    words = sorted(set(WORD_APOSTROPHE.findall(prompt)))
    # The pipeline's placeholders ("longcat_$##$_longcat" repeated i + 1 times, over a set's
    # order) contain one another, which garbles prompts with two such words differently from
    # run to run; these do not.
    marks = {word: f"\x00{i}\x01" for i, word in enumerate(words)}
    for word, mark in marks.items():
        prompt = prompt.replace(word, mark)
    pieces = []
    for piece in re.split(f"({QUOTED})", prompt):
        quoted = bool(re.match(QUOTED, piece))
        for word, mark in marks.items():
            piece = piece.replace(mark, word)
        if piece:
            pieces.append((piece, quoted))
    return pieces


def prompt_tokens(tokenizer: Any, text: str) -> list[int]:
    """The prompt's token ids: quoted pieces one character at a time, at most 512."""
    ids: list[int] = []
    for piece, quoted in split_quotation(text):
        for unit in piece if quoted else [piece]:
            ids.extend(tokenizer(unit, add_special_tokens=False)["input_ids"])
    return ids[:MAX_TOKENS]


def encode(clip: Any, text: str, image: Any = None) -> dict[str, Any]:
    """A CONDITIONING ({"embeds": [1, T, D] float32 on the CPU}) for `text`: T = 512, or with
    `image` (PIL; LongCatImageEditPipeline's encoding) the image's tokens and the 512."""
    import torch

    from easel.models.qwen_text import _hidden_states, image_processor, qwen_part

    part = qwen_part(clip)
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(part.model)
    tokenizer = part.tokenizer
    vision: dict[str, Any] = {}
    if image is None:
        prefix = tokenizer(PROMPT_PREFIX, add_special_tokens=False)["input_ids"]
        keep = len(prefix)
    else:  # one image token per merged patch, as the pipeline expands them
        processor = image_processor()
        vision = dict(processor(images=[image], return_tensors="pt"))
        count = int(vision["image_grid_thw"].prod()) // processor.merge_size**2
        prefix = tokenizer(EDIT_PREFIX.format(IMAGE_PAD * count), add_special_tokens=False)[
            "input_ids"
        ]
        keep = prefix.index(tokenizer.convert_tokens_to_ids("<|vision_start|>"))
    suffix = tokenizer(PROMPT_SUFFIX, add_special_tokens=False)["input_ids"]
    ids = prompt_tokens(tokenizer, text)
    pad = tokenizer.pad_token_id
    if pad is None:
        raise ValueError(f"this CLIP's tokenizer ({clip.name}) has no padding token")
    padding = MAX_TOKENS - len(ids)
    input_ids = torch.tensor([prefix + ids + [pad] * padding + suffix])
    mask = torch.tensor([[1] * (len(prefix) + len(ids)) + [0] * padding + [1] * len(suffix)])
    inputs = {"input_ids": input_ids, "attention_mask": mask, **vision}
    hidden = _hidden_states(part, inputs)
    embeds = hidden[:, keep : hidden.shape[1] - len(suffix)]
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([part.model])
    return {"embeds": embeds.float().cpu()}


def encode_edit(clip: Any, text: str, image: Any) -> dict[str, Any]:
    """LongCat-Image-Edit's CONDITIONING for `text` and `image` ([1, 3, H, W] in [0, 1], the
    image the VAE encodes): the vision tower sees it at half its width and height (Lanczos), as
    LongCatImageEditPipeline hands it over."""
    from PIL import Image

    from easel.models.qwen_text import to_pil

    (pil,) = to_pil(image[:1])
    half = pil.resize((max(1, pil.width // 2), max(1, pil.height // 2)), Image.Resampling.LANCZOS)
    return encode(clip, text, half)


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Any:
    """The family's text encoding (easel.models.text.encode_prompts): the "qwen" part's text."""
    from easel.models.qwen_text import qwen_part
    from easel.models.text import Encoded

    part = qwen_part(clip)
    return Encoded(encode(clip, texts.get(part.key, "")))
