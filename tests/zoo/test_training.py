"""Two-step smoke runs of every training stage on tiny models, reloaded with from_pretrained."""

import json

import torch

from easel.zoo.cli import STAGES, main


def test_every_stage_reloads_with_from_pretrained(work_dir):
    from diffusers import AutoencoderKL, PriorTransformer, UNet2DConditionModel, UNet2DModel
    from transformers import CLIPModel, CLIPTokenizer

    vae = AutoencoderKL.from_pretrained(work_dir / "vae" / "model")
    assert vae.config.scaling_factor != 0.18215  # measured from the latents, not the SD default
    clip = CLIPModel.from_pretrained(work_dir / "clip" / "model")
    tokenizer = CLIPTokenizer.from_pretrained(work_dir / "clip" / "model")
    assert tokenizer.eos_token_id == clip.config.text_config.eos_token_id
    assert tokenizer.model_max_length == clip.config.text_config.max_position_embeddings
    unet = UNet2DConditionModel.from_pretrained(work_dir / "unet" / "model")
    assert unet.config.cross_attention_dim == clip.config.text_config.hidden_size
    prior = PriorTransformer.from_pretrained(work_dir / "prior" / "model")
    assert (
        float(prior.clip_std.detach().abs().sum()) > 0
    )  # normalisation stats are stored in the weights
    decoder = UNet2DConditionModel.from_pretrained(work_dir / "decoder" / "model")
    assert decoder.config.addition_embed_type == "image"
    upscaler = UNet2DModel.from_pretrained(work_dir / "upscaler" / "model")
    assert upscaler.config.in_channels == 6
    for stage in STAGES:
        info = json.loads((work_dir / stage / "result.json").read_text())
        assert info["steps"] == 2


def test_tokenizer_has_every_byte_symbol_and_one_token_per_caption_word(work_dir):
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(work_dir / "clip" / "model")
    vocab = tokenizer.get_vocab()
    assert len([t for t in vocab if t.endswith("</w>") and len(t) == 5]) == 256
    ids = tokenizer("a large red circle on the left")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert len(ids) == 9
    assert tokenizer.decode(tokenizer("zebra 42!")["input_ids"], skip_special_tokens=True)


def test_resume_continues_from_checkpoint(tmp_path, capsys):
    args = ["train", "shapes", "--stage", "vae", "--tiny", "--no-eval", "--work-dir", str(tmp_path)]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "resumed at step 2" in out and "step 3/3" in out and "step 1/3" not in out


def test_same_seed_same_weights(tmp_path):
    weights = []
    for run in ("a", "b"):
        assert (
            main(
                [
                    "train",
                    "shapes",
                    "--stage",
                    "vae",
                    "--tiny",
                    "--no-eval",
                    "--work-dir",
                    str(tmp_path / run),
                ]
            )
            == 0
        )
        state = torch.load(tmp_path / run / "vae" / "checkpoint.pt", weights_only=False)
        weights.append(state["modules"]["vae"])
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_reference_samplers_run_on_the_trained_stages(work_dir):
    """Text -> prior -> image embedding -> decoder -> 32x32 -> upscaler -> 64 and 128."""
    from diffusers import PriorTransformer, UNet2DConditionModel, UNet2DModel

    from easel.zoo.shapes.components import load_clip, load_vae, sampling_scheduler
    from easel.zoo.shapes.train_clip import clip_embeddings
    from easel.zoo.shapes.train_prior import prior_scheduler
    from easel.zoo.shapes.train_upscaler import upscale
    from easel.zoo.shapes.unclip import sample_decoder, sample_prior

    clip, tokenizer = load_clip(work_dir)
    vae = load_vae(work_dir)
    prior = PriorTransformer.from_pretrained(work_dir / "prior" / "model")
    decoder = UNet2DConditionModel.from_pretrained(work_dir / "decoder" / "model")
    upscaler = UNet2DModel.from_pretrained(work_dir / "upscaler" / "model")
    text = clip_embeddings(clip, tokenizer, ["a red circle", "a blue square"], "cpu")
    uncond = clip_embeddings(clip, tokenizer, [""], "cpu")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        embeds = sample_prior(prior, prior_scheduler(), text, uncond, steps=2, generator=gen)
        assert embeds.shape == (2, clip.config.projection_dim)
        images = sample_decoder(decoder, sampling_scheduler("euler"), vae, embeds, steps=2)
        assert images.shape == (2, 32, 32, 3)
        big = upscale(upscaler, upscale(upscaler, images, steps=2), steps=2)
    assert big.shape == (2, 128, 128, 3)
