"""Textual-inversion embeddings: `embedding:name` in prompts gives diffusers'
load_textual_inversion encoding (SD1, and SDXL's two encoders loaded the diffusers way), in
every file format users have, found in the models folder's embeddings/ as ComfyUI finds them."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from easel.models.embeddings import find_embedding, fingerprint, load_embedding_file
from easel.models.errors import ModelError, UnsafePickleError
from easel.models.handles import ClipHandle
from easel.models.text import encode_text
from tests.models.test_text_encoding import (
    G_WIDTH,
    L_WIDTH,
    manager,
    sd1_clip,
    sd1_reference,
    sdxl_clip,
    sdxl_reference,
)


def vectors(count: int, width: int, seed: int = 7) -> Any:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, width, generator=generator)


def write(root: Path, name: str, data: dict[str, Any]) -> Path:
    path = root / "embeddings" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file(data, str(path))
    else:
        torch.save(data, str(path))
    return path


def a1111_pt(tensor: Any) -> dict[str, Any]:
    return {
        "string_to_token": {"*": 265},
        "string_to_param": {"*": tensor},
        "name": "style",
        "step": 500,
    }


# -- parity with diffusers ------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["emb_params", "diffusers"])
def test_sd1_embedding_matches_load_textual_inversion(tmp_path: Path, fmt: str) -> None:
    vecs = vectors(3, L_WIDTH)
    data = {"emb_params": vecs} if fmt == "emb_params" else {"<style>": vecs}
    path = write(tmp_path, "style.safetensors", data)
    clip, pipe = sd1_clip(tmp_path)
    pipe.load_textual_inversion(str(path), token="<style>")
    encoded = encode_text(clip, "a embedding:style circle")
    assert encoded.warnings == []
    assert torch.equal(encoded.conditioning["embeds"], sd1_reference(pipe, "a <style> circle"))


def test_a1111_pickle_embedding_needs_pickle_allowed(tmp_path: Path) -> None:
    vecs = vectors(2, L_WIDTH)
    path = write(tmp_path, "old.pt", a1111_pt(vecs))
    clip, pipe = sd1_clip(tmp_path)
    with pytest.raises(UnsafePickleError, match=r"old\.pt is a pickle file"):
        encode_text(clip, "a embedding:old circle")
    clip.manager.allow_unsafe_pickle = True
    pipe.load_textual_inversion(str(path), token="<old>")
    ours = encode_text(clip, "a embedding:old circle").conditioning["embeds"]
    assert torch.equal(ours, sd1_reference(pipe, "a <old> circle"))


def test_sdxl_embedding_feeds_each_encoder_its_own_tensor(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "xl.safetensors",
        {"clip_l": vectors(2, L_WIDTH, 1), "clip_g": vectors(2, G_WIDTH, 2)},
    )
    clip, pipe = sdxl_clip(tmp_path)
    state = load_file(str(path))
    pipe.load_textual_inversion(
        state["clip_g"], token="<xl>", text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2
    )
    pipe.load_textual_inversion(
        state["clip_l"], token="<xl>", text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer
    )
    encoded = encode_text(clip, "photo of embedding:xl.safetensors, red").conditioning
    embeds, pooled = sdxl_reference(pipe, "photo of <xl>, red")
    assert torch.equal(encoded["embeds"], embeds)
    assert torch.equal(encoded["pooled"], pooled)


def test_refiner_takes_the_clip_g_tensor(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "xl.safetensors",
        {"clip_l": vectors(2, L_WIDTH, 1), "clip_g": vectors(2, G_WIDTH, 2)},
    )
    clip, pipe = sdxl_clip(tmp_path, refiner=True)
    pipe.load_textual_inversion(
        load_file(str(path))["clip_g"],
        token="<xl>",
        text_encoder=pipe.text_encoder_2,
        tokenizer=pipe.tokenizer_2,
    )
    encoded = encode_text(clip, "embedding:xl red").conditioning
    embeds, pooled = sdxl_reference(pipe, "<xl> red")
    assert torch.equal(encoded["embeds"], embeds) and torch.equal(encoded["pooled"], pooled)


def test_weighted_embedding_interpolates_its_vectors(tmp_path: Path) -> None:
    write(tmp_path, "style.safetensors", {"emb_params": vectors(2, L_WIDTH)})
    clip, _ = sd1_clip(tmp_path)
    plain = encode_text(clip, "a embedding:style circle").conditioning["embeds"][0]
    weighted = encode_text(clip, "a (embedding:style:1.4) circle").conditioning["embeds"][0]
    empty = encode_text(clip, "").conditioning["embeds"][0]
    expected = plain.clone()
    expected[2:4] = empty[2:4] + (plain[2:4] - empty[2:4]) * 1.4  # BOS, a, 2 vectors, ...
    torch.testing.assert_close(weighted, expected, rtol=0, atol=1e-6)
    assert torch.equal(weighted[4:], plain[4:])


# -- warnings and errors -------------------------------------------------------------------------
def test_unknown_embedding_warns_and_is_not_read_as_text(tmp_path: Path) -> None:
    clip, pipe = sd1_clip(tmp_path)
    encoded = encode_text(clip, "a embedding:nowhere circle")
    assert len(encoded.warnings) == 1
    warning = encoded.warnings[0]
    assert "'nowhere' not found" in warning and str(tmp_path / "embeddings") in warning
    assert torch.equal(encoded.conditioning["embeds"], sd1_reference(pipe, "a circle"))
    with_comma = encode_text(clip, "a embedding:nowhere, circle")  # the comma stays, as ComfyUI
    assert with_comma.warnings == [warning.replace("'nowhere'", "'nowhere,'")]
    assert torch.equal(with_comma.conditioning["embeds"], sd1_reference(pipe, "a , circle"))


def test_embedding_for_another_width_warns_and_is_ignored(tmp_path: Path) -> None:
    write(tmp_path, "sd2.safetensors", {"emb_params": vectors(2, 24)})
    clip, pipe = sd1_clip(tmp_path)
    encoded = encode_text(clip, "a embedding:sd2 circle")
    assert encoded.warnings == [
        "embedding 'sd2' (sd2.safetensors) has vectors of width 24, but the text encoder takes "
        f"{L_WIDTH}: ignored (is it for another model family?)"
    ]
    assert torch.equal(encoded.conditioning["embeds"], sd1_reference(pipe, "a circle"))


def test_sdxl_file_on_sd1_uses_its_clip_l_tensor(tmp_path: Path) -> None:
    write(
        tmp_path,
        "xl.safetensors",
        {"clip_g": vectors(2, G_WIDTH, 2), "clip_l": vectors(2, L_WIDTH, 1)},
    )
    clip, pipe = sd1_clip(tmp_path)
    pipe.load_textual_inversion(vectors(2, L_WIDTH, 1), token="<xl>")
    ours = encode_text(clip, "embedding:xl").conditioning["embeds"]
    assert torch.equal(ours, sd1_reference(pipe, "<xl>"))


def test_damaged_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "embeddings" / "broken.safetensors"
    path.parent.mkdir()
    path.write_bytes(b"\x00" * 16)
    with pytest.raises(ModelError, match=r"could not read embedding file .*broken\.safetensors"):
        load_embedding_file(path)
    write(tmp_path, "empty.safetensors", {"step": torch.tensor(3)})
    with pytest.raises(ModelError, match="holds no embedding vectors"):
        load_embedding_file(tmp_path / "embeddings" / "empty.safetensors")


# -- finding files ---------------------------------------------------------------------------------
def test_names_resolve_as_comfyui_does(tmp_path: Path) -> None:
    style = write(tmp_path, "style.safetensors", {"emb_params": vectors(1, L_WIDTH)})
    deep = write(tmp_path, "sub/deep.pt", a1111_pt(vectors(1, L_WIDTH)))
    models = manager(tmp_path)
    assert find_embedding(models, "style") == style
    assert find_embedding(models, "style.safetensors") == style
    assert find_embedding(models, "sub/deep") == deep
    assert find_embedding(models, "deep") == deep  # a bare name also matches in sub-folders
    assert find_embedding(models, "sub\\deep.pt") == deep  # Windows workflows
    assert find_embedding(models, "missing") is None
    assert find_embedding(models, "../embeddings/style") is None


def test_fallback_without_a_kind_listing_looks_under_each_root(tmp_path: Path) -> None:
    style = write(tmp_path, "a/style.safetensors", {"emb_params": vectors(1, L_WIDTH)})

    bare = SimpleNamespace(roots=[tmp_path], allow_unsafe_pickle=False)  # no names()/resolve()
    assert find_embedding(bare, "a/style") == style
    assert find_embedding(bare, "style") == style
    assert find_embedding(bare, "../../etc/passwd") is None


def test_trailing_comma_is_retried_and_kept(tmp_path: Path) -> None:
    write(tmp_path, "style.safetensors", {"emb_params": vectors(2, L_WIDTH)})
    clip, _ = sd1_clip(tmp_path)
    glued = encode_text(clip, "a embedding:style, circle")
    spaced = encode_text(clip, "a embedding:style , circle")
    assert glued.warnings == []
    assert torch.equal(glued.conditioning["embeds"], spaced.conditioning["embeds"])


def test_fingerprint_changes_when_an_embedding_appears(tmp_path: Path) -> None:
    models = manager(tmp_path)
    before = fingerprint(models, ["style"])
    assert before == "style=missing"
    write(tmp_path, "style.safetensors", {"emb_params": vectors(1, L_WIDTH)})
    after = fingerprint(models, ["style"])
    assert after != before and "style.safetensors" in after


def test_loaded_files_are_cached_per_manager(tmp_path: Path) -> None:
    write(tmp_path, "style.safetensors", {"emb_params": vectors(1, L_WIDTH)})
    clip, _ = sd1_clip(tmp_path)
    from easel.models import embeddings

    first = encode_text(clip, "embedding:style")
    cached = embeddings._caches[clip.manager]
    assert len(cached) == 1
    ((key, loaded),) = cached.items()
    encode_text(ClipHandle("again", clip.parts, clip.manager), "embedding:style")
    assert embeddings._caches[clip.manager][key] is loaded
    assert first.warnings == []


# -- the image, through the nodes ----------------------------------------------------------------
def test_embedding_image_matches_diffusers_load_textual_inversion(
    tmp_path: Path, tiny_env: Any
) -> None:
    """The txt2img workflow with `embedding:style` in the prompt gives the image of the
    diffusers pipeline with the same file loaded by load_textual_inversion."""
    from diffusers import StableDiffusionPipeline

    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from tests.nodes.workflows import SIZE, txt2img

    tiny_models = tiny_env  # EASEL_MODELS_DIR points at the tiny checkpoint
    path = write(tmp_path, "style.safetensors", {"emb_params": vectors(2, 8) * 0.5})
    models = ModelManager([tiny_models.root, tmp_path], device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": models})
    nodes = txt2img("a embedding:style circle", negative="blue", steps=3)
    result = executor.run(
        {"format": "easel.workflow", "version": 1, "nodes": nodes},
        targets=["dec"],
        keep_values=True,
    )
    assert result.status == "succeeded", result.failures
    ours = result.values["dec"]["image"]

    pipe = StableDiffusionPipeline.from_pretrained(
        str(tiny_models.bundle), local_files_only=True, safety_checker=None
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.load_textual_inversion(str(path), token="<style>")
    reference = pipe(
        "a <style> circle",
        negative_prompt="blue",
        height=SIZE,
        width=SIZE,
        num_inference_steps=3,
        guidance_scale=5.0,
        generator=torch.Generator("cpu").manual_seed(42),
        output_type="np",
    ).images
    reference = torch.from_numpy(reference).permute(0, 3, 1, 2)
    assert ours.shape == reference.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - reference).abs().max().item() <= 1e-3
    plain = executor.run(
        {
            "format": "easel.workflow",
            "version": 1,
            "nodes": txt2img("a circle", negative="blue", steps=3),
        },
        targets=["dec"],
        keep_values=True,
    ).values["dec"]["image"]
    assert (ours - plain).abs().max().item() > 1e-3  # the embedding changed the image


def test_splicing_touches_only_the_calling_threads_call(tmp_path: Path) -> None:
    """The shared text encoder is untouched for other threads while a prompt with an
    embedding is encoded, and after it."""
    import threading

    from easel.models.text import _vectors_spliced

    clip, _ = sd1_clip(tmp_path)
    model = clip.parts[0].model
    ids = clip.tokenizer(
        "a red circle", padding="max_length", max_length=77, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        plain = model(ids).last_hidden_state
    where = torch.zeros(1, 77, dtype=torch.bool)
    where[0, 2] = True
    seen: dict[str, Any] = {}
    with torch.no_grad(), _vectors_spliced(model, where, torch.ones(1, 77, L_WIDTH)):
        here = model(ids).last_hidden_state
        worker = threading.Thread(target=lambda: seen.update(out=model(ids).last_hidden_state))
        worker.start()
        worker.join()
    with torch.no_grad():
        after = model(ids).last_hidden_state
    assert not torch.equal(here, plain)
    assert torch.equal(seen["out"], plain) and torch.equal(after, plain)
