"""Text conditioning: a prompt through a checkpoint's CLIP text towers (`ClipHandle.parts`) into
a CONDITIONING dict, as ComfyUI encodes it and, for plain prompts, bit-identical to diffusers'
`encode_prompt`.

- Each part uses the hidden state of `part.layer` (final layer norm applied when
  `part.layer_norm`); SDXL's parts are concatenated on the last dim; `pooled` is the projected
  pooled output of the part marked `pooled` (else of the first part).
- Prompt weights and `embedding:name` follow ComfyUI (see `easel.models.prompt_syntax`): a
  weighted token is `z_empty + (z - z_empty) * w`, `z_empty` being the empty prompt's encoding
  at the same position; embedding vectors replace token embeddings at their positions.
- Prompts longer than the window are encoded in chunks of BOS + 75 tokens + EOS (padded) whose
  hidden states are concatenated; a piece of fewer than 8 tokens is not split across chunks
  (ComfyUI's rule); `pooled` comes from the first chunk.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from easel.models import embeddings as embedding_files
from easel.models.prompt_syntax import Embedding, glued_embeddings, parse_prompt

MAX_WORD_TOKENS = 8  # ComfyUI: a piece this long may be split across chunks


@dataclass
class Encoded:
    """A CONDITIONING dict and the warnings worth showing the user."""

    conditioning: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Item:
    """One position of a chunk: a token id, or an embedding vector (placeholder id)."""

    token: int
    weight: float = 1.0
    vector: Any = None


@dataclass
class _Tokens:
    """A part's prompt as chunks of exactly `window` items."""

    chunks: list[list[_Item]]
    count: int  # prompt tokens and vectors, without BOS/EOS/padding


class _Layout:
    """Token ids of one part's tokenizer and its window (BOS + content + EOS)."""

    def __init__(self, part: Any) -> None:
        tokenizer = part.tokenizer
        self.tokenizer = tokenizer
        window = int(min(tokenizer.model_max_length, 512))
        positions = getattr(getattr(part.model, "config", None), "max_position_embeddings", None)
        self.window = int(min(window, positions)) if positions else window
        self.bos = int(tokenizer.bos_token_id)
        self.eos = int(tokenizer.eos_token_id)
        pad = tokenizer.pad_token_id
        self.pad = int(pad) if pad is not None else self.eos

    def close(self, chunk: list[_Item]) -> None:
        chunk.append(_Item(self.eos))
        chunk.extend(_Item(self.pad) for _ in range(self.window - len(chunk)))

    def empty(self) -> list[_Item]:
        chunk = [_Item(self.bos)]
        self.close(chunk)
        return chunk

    def chunks(self, groups: list[list[_Item]]) -> list[list[_Item]]:
        """ComfyUI's layout: groups (a text piece's tokens, an embedding's vectors) fill
        chunks; one that does not fit starts the next chunk, unless it has 8 or more items,
        then it is split."""
        room = self.window - 1  # positions before EOS, BOS included
        current = [_Item(self.bos)]
        chunks = [current]
        for group in groups:
            while group:
                if len(current) + len(group) <= room:
                    current.extend(group)
                    break
                if len(group) >= MAX_WORD_TOKENS:
                    free = room - len(current)
                    current.extend(group[:free])
                    group = group[free:]
                self.close(current)
                current = [_Item(self.bos)]
                chunks.append(current)
        self.close(current)
        return chunks


def _tokenize(clip: Any, part: Any, layout: _Layout, text: str, warnings: list[str]) -> _Tokens:
    width = int(part.model.get_input_embeddings().embedding_dim)
    groups: list[list[_Item]] = []
    for piece in parse_prompt(text):
        if isinstance(piece, Embedding):
            vectors, leftover = _embedding(clip, part, piece, width, warnings)
            if vectors is not None:
                groups.append([_Item(layout.bos, piece.weight, row) for row in vectors])
            if not leftover:
                continue
            piece_text = leftover
        else:
            piece_text = piece.text
        ids = layout.tokenizer(piece_text, add_special_tokens=False, truncation=False).input_ids
        if ids:
            groups.append([_Item(int(i), piece.weight) for i in ids])
    return _Tokens(layout.chunks(groups), sum(len(g) for g in groups))


def _embedding(
    clip: Any, part: Any, piece: Embedding, width: int, warnings: list[str]
) -> tuple[Any, str]:
    """(vectors or None, text left over to tokenise) of an `embedding:` piece; a warning when
    there are no vectors. Like ComfyUI, commas stripped from the name stay as text."""
    manager = clip.manager
    candidates = piece.candidates()
    for name, leftover in candidates:
        path = embedding_files.find_embedding(manager, name)
        if path is None:
            continue
        loaded = embedding_files.load_embedding(manager, path)
        vectors = loaded.for_encoder(width, part.key)
        if vectors is None:
            which = f"text encoder {part.key!r}" if part.key else "the text encoder"
            _warn_once(
                warnings,
                f"embedding {name!r} ({path.name}) has vectors of width "
                f"{', '.join(map(str, loaded.widths))}, but {which} takes "
                f"{width}: ignored (is it for another model family?)",
            )
        return vectors, leftover
    _warn_once(
        warnings,
        f"embedding {piece.name!r} not found (looked for it, and with "
        f"{', '.join(embedding_files.EXTENSIONS)} added, in "
        f"{embedding_files.looked_in(manager)}): ignored",
    )
    return None, candidates[-1][1]


def _warn_once(warnings: list[str], message: str) -> None:
    if message not in warnings:
        warnings.append(message)


# -- running a text tower --------------------------------------------------------------------
# What the token-embedding hook splices in for the current call: (embedding module, positions
# [C, W] bool, vectors [C, W, D]). A ContextVar, so concurrent calls on the shared module from
# other threads are untouched.
_SPLICE: ContextVar[tuple[Any, Any, Any] | None] = ContextVar("easel_text_splice", default=None)
_hooked: weakref.WeakSet[Any] = weakref.WeakSet()
_hook_lock = threading.Lock()


def _splice_hook(module: Any, args: Any, output: Any) -> Any:
    import torch

    spec = _SPLICE.get()
    if spec is None or spec[0] is not module or output.shape[:2] != spec[1].shape:
        return None
    mask = spec[1].to(output.device).unsqueeze(-1)
    return torch.where(mask, spec[2].to(output.device, output.dtype), output)


@contextmanager
def _vectors_spliced(model: Any, positions: Any, vectors: Any) -> Iterator[None]:
    """Token embeddings replaced by `vectors` where `positions` is set, for this call only
    (the module is shared), as diffusers' added textual-inversion tokens would be."""
    embedding = model.get_input_embeddings()
    with _hook_lock:  # one permanent hook per module; it does nothing outside this block
        if embedding not in _hooked:
            embedding.register_forward_hook(_splice_hook)
            _hooked.add(embedding)
    token = _SPLICE.set((embedding, positions, vectors))
    try:
        yield
    finally:
        _SPLICE.reset(token)


def _final_norm(model: Any) -> Any:
    norm = getattr(model, "final_layer_norm", None)
    return norm if norm is not None else model.text_model.final_layer_norm


def _run(clip: Any, part: Any, chunks: list[list[_Item]]) -> tuple[Any, Any, Any]:
    """(hidden [C, W, D] float32, pooled [C, P] float32, attention mask [C, W] bool). Chunks
    run one at a time, so a chunk's encoding never depends on how many follow it (the first
    one equals diffusers' encoding of the truncated prompt, bit for bit)."""
    import torch

    results = [_run_chunk(clip, part, chunk) for chunk in chunks]
    return tuple(torch.cat([r[i] for r in results]) for i in range(3))  # type: ignore[return-value]


def _run_chunk(clip: Any, part: Any, chunk: list[_Item]) -> tuple[Any, Any, Any]:
    import torch

    model = part.model
    device = next(model.parameters()).device
    ids = torch.tensor([[item.token for item in chunk]])
    eos = int(part.tokenizer.eos_token_id)
    mask = torch.zeros(ids.shape, dtype=torch.long)  # 1 up to and including the first EOS
    for col, item in enumerate(chunk):
        mask[0, col] = 1
        if item.vector is None and item.token == eos and col > 0:
            break
    config = model.config
    layer = int(part.layer)
    use_last = (layer == -1 and part.layer_norm) or abs(layer) > int(config.num_hidden_layers)
    use_mask = bool(getattr(config, "use_attention_mask", False))
    runner = clip.forward(part)
    kwargs: dict[str, Any] = {"attention_mask": mask.to(device) if use_mask else None}
    if not use_last:  # ComfyUI: a layer deeper than the encoder means the last one
        kwargs["output_hidden_states"] = True
    with torch.inference_mode():
        spliced = [(col, item.vector) for col, item in enumerate(chunk) if item.vector is not None]
        if spliced:
            where = torch.zeros(ids.shape, dtype=torch.bool)
            vectors = torch.zeros(*ids.shape, int(model.get_input_embeddings().embedding_dim))
            for col, vector in spliced:
                where[0, col] = True
                vectors[0, col] = vector
            with _vectors_spliced(model, where, vectors):
                out = runner(ids.to(device), **kwargs)
        else:
            out = runner(ids.to(device), **kwargs)
        if use_last:
            hidden = out.last_hidden_state
        else:
            hidden = out.hidden_states[layer]
            if part.layer_norm:
                hidden = _final_norm(model)(hidden)
        pooled = getattr(out, "text_embeds", None)
        if pooled is None:
            pooled = out.pooler_output
            if part.text_projection is not None:
                pooled = part.text_projection(pooled)
    return hidden.float().cpu(), pooled.float().cpu(), mask.bool()


def _empty_hidden(clip: Any, part: Any, layout: _Layout) -> Any:
    """The empty prompt's hidden states for this part [W, D] (cached on the handle)."""
    key = f"z_empty:{part.key}"
    if key not in clip.empty_cache:
        clip.empty_cache[key] = _run(clip, part, [layout.empty()])[0][0]
    return clip.empty_cache[key]


def _weighted(hidden: Any, chunks: list[list[_Item]], z_empty: Any) -> Any:
    """ComfyUI's weighting: z_empty + (z - z_empty) * w where w != 1."""
    import torch

    weights = torch.tensor(
        [[item.weight for item in chunk] for chunk in chunks], dtype=hidden.dtype
    ).unsqueeze(-1)
    if bool((weights == 1.0).all()):
        return hidden
    moved = (hidden - z_empty) * weights + z_empty
    return torch.where(weights != 1.0, moved, hidden)


def place(clip: Any) -> None:
    """Put every text tower of `clip` on the compute device."""
    manager = clip.manager
    if manager is None or not hasattr(manager, "place"):
        return
    for part in clip.parts:
        manager.place(part.model)
        if part.text_projection is not None:
            manager.place(part.text_projection)


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Encoded:
    """Encode one text per part (`texts[part.key]`; SDXL: "l" and "g"). Parts whose prompts
    need fewer chunks are padded with empty-prompt chunks (as ComfyUI's CLIPTextEncodeSDXL)."""
    import importlib

    import torch

    from easel.models import t5_text

    encoding = getattr(clip.family, "text_encoding", None)  # a family's own text module
    if encoding:
        return importlib.import_module(encoding).encode_prompts(clip, texts)  # type: ignore[no-any-return]
    if t5_text.is_t5_clip(clip):  # Flux: T5 embeddings + CLIP-L pooled
        return t5_text.encode_prompts(clip, texts)  # type: ignore[no-any-return]
    place(clip)
    warnings: list[str] = []
    layouts = [_Layout(part) for part in clip.parts]
    tokens = [
        _tokenize(clip, part, layout, texts.get(part.key, ""), warnings)
        for part, layout in zip(clip.parts, layouts, strict=True)
    ]
    for text in dict.fromkeys(texts.values()):
        for glued in glued_embeddings(text):
            _warn_once(
                warnings,
                f"{glued!r} has no space before it, so it is read as text "
                "(as ComfyUI does): put a space before 'embedding:'",
            )
    count = max(len(t.chunks) for t in tokens)
    longest = max(t.count for t in tokens)
    if count > 1:
        inner = layouts[0].window - 2
        _warn_once(
            warnings,
            f"the prompt has {longest} tokens, more than the text encoder's "
            f"{inner}: encoded in {count} windows of {inner} and concatenated",
        )
    hiddens, masks, pooled = [], [], None
    for part, layout, part_tokens in zip(clip.parts, layouts, tokens, strict=True):
        chunks = part_tokens.chunks + [
            layout.empty() for _ in range(count - len(part_tokens.chunks))
        ]
        hidden, part_pooled, mask = _run(clip, part, chunks)
        if any(item.weight != 1.0 for chunk in chunks for item in chunk):
            hidden = _weighted(hidden, chunks, _empty_hidden(clip, part, layout))
        hiddens.append(hidden.reshape(1, -1, hidden.shape[-1]))
        masks.append(mask.reshape(1, -1))
        if pooled is None or part.pooled:
            pooled = part_pooled[:1]
    embeds = hiddens[0] if len(hiddens) == 1 else torch.cat(hiddens, dim=-1)
    mask = masks[0]
    for other in masks[1:]:
        mask = mask | other
    return Encoded({"embeds": embeds, "pooled": pooled, "attention_mask": mask}, warnings)


def encode_text(clip: Any, text: str) -> Encoded:
    """Encode `text` with every part of `clip` (SDXL: both towers get the same text)."""
    return encode_prompts(clip, {part.key: text for part in clip.parts})
