"""Peak resident memory (RSS) of one text-to-image run per model family, on tiny random models
in ComfyUI's file layouts, CPU fp32.

Each family runs in a fresh process: load (Flux: ComfyUI's split files through
DiffusionModelLoader, DualTextEncoderLoader and VAELoader; SD 1.x: a single-file checkpoint),
encode, sample 4 steps at 64x64, decode. The figures are the process's peak RSS and its RSS
after importing torch, diffusers and Easel (the floor every run pays), so that the difference is
what the models and the run cost (Linux: read from /proc/self/status, VmRSS and VmHWM).

    python benchmarks/bench_families_memory.py [--families flux-dev,flux-schnell,sd1]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, os, sys
sys.path.insert(0, {root!r})


def status(field):
    # /proc, not getrusage: ru_maxrss survives exec, so it would report the parent's peak
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


family, root = sys.argv[1:3]
import torch, diffusers, transformers  # noqa: F401 (the floor every run pays)
from easel.core.executor import Executor
from easel.core.plugins import load_plugins
from easel.models.manager import ModelManager
floor = status("VmRSS")
roots = [os.path.join(root, "models"), os.path.join(root, "ComfyUI")]
os.environ["EASEL_MODELS_DIR"] = os.pathsep.join(roots)
manager = ModelManager(roots, device="cpu", dtype=torch.float32)
executor = Executor(load_plugins(entry_points=False), services={{"models": manager}})
if family.startswith("flux2"):
    from tests.fixtures.flux2_family import mistral_folder
    from tests.families.test_flux2_parity import workflow
    os.environ["EASEL_MISTRAL_TOKENIZER"] = str(mistral_folder(__import__("pathlib").Path(root)))
    nodes = workflow(family.split("-")[1], steps=4)
elif family.startswith("flux3"):
    from tests.families.test_flux3_parity import workflow
    distilled = family == "flux3-distilled"  # a flow map: cfg 1, as its templates
    nodes = workflow("distilled" if distilled else "base", steps=4, cfg=1.0 if distilled else 3.5)
elif family == "flux-redux":  # Flux dev with two Redux image prompts (SigLIP + projector)
    from tests.families.test_redux_parity import redux_workflow
    from tests.fixtures.clip_vision_files import random_images
    pictures = [os.path.join(root, f"redux{{i}}.png") for i in range(2)]
    for picture, image in zip(pictures, random_images(2)):
        image.save(picture)
    nodes = redux_workflow(pictures, steps=4)
elif family.startswith("flux"):
    from tests.families.test_flux_parity import split_workflow
    nodes = split_workflow(family.split("-")[1], steps=4)
elif family.startswith("sd3.5"):
    from tests.families.test_sd3_parity import split_workflow
    nodes = split_workflow(family.split("-")[1], steps=4)
elif family == "hidream-dev":
    from tests.families.test_hidream_parity import workflow
    nodes = workflow(steps=4)
elif family == "chroma":
    from tests.families.test_chroma_parity import workflow
    nodes = workflow(steps=4)
elif family == "qwen-image":
    from tests.families.test_qwen_image_parity import split_workflow
    nodes = split_workflow(steps=4)
elif family == "longcat-image":
    from tests.families.test_longcat_parity import split_workflow
    nodes = split_workflow(steps=4)
elif family == "ovis-image":
    from tests.families.test_ovis_parity import split_workflow
    nodes = split_workflow(steps=4)
elif family == "kandinsky5-image":
    from tests.families.test_kandinsky5_parity import split_workflow
    nodes = split_workflow(steps=4)
elif family == "hunyuan-video-1.5":  # Capybara's shape: one frame, cfg 6 with a negative
    from tests.families.test_hunyuan15_parity import split_workflow
    from tests.families.workflows import custom_sampling
    nodes = custom_sampling(split_workflow(), cfg=6.0, steps=4)
elif family == "joyimage-edit":  # with a 64x64 reference image
    from PIL import Image
    from tests.families.test_joyimage_parity import workflow
    picture = os.path.join(root, "input.png")
    Image.new("RGB", (64, 64), (120, 30, 200)).save(picture)
    nodes = workflow(__import__("pathlib").Path(picture), steps=4)
elif family == "chrono-edit":  # a 32x32 image edited as the last of 5 frames (Wan 2.1)
    from PIL import Image
    from tests.families.test_wan_parity import workflow
    picture = os.path.join(root, "input.png")
    Image.new("RGB", (32, 32), (120, 30, 200)).save(picture)
    os.environ["EASEL_UMT5_TOKENIZER"] = os.path.join(root, "umt5_tokenizer")
    nodes = workflow(__import__("pathlib").Path(picture), steps=4)
elif family == "qwen-image-layered":  # a 64x64 image into 2 layers, true CFG
    from tests.families.test_qwen_layered_parity import layered_workflow
    nodes = layered_workflow(__import__("pathlib").Path(root) / "input.png", steps=4)
elif family == "qwen-image-2.1":
    from tests.families.test_qwen_image21_parity import split_workflow
    nodes = split_workflow(steps=4)
elif family == "krea2":
    from tests.families.test_krea2_parity import split_workflow
    nodes = split_workflow(steps=4)
elif family == "ideogram4":
    from tests.families.test_ideogram4_parity import workflow
    nodes = workflow(steps=4, cfg=4.0, override=(2.0, 0.7, 1.0))
elif family == "fibo2":
    from tests.families.test_fibo2_parity import workflow
    nodes = workflow(steps=4)
elif family == "minimax-h3":  # one latent frame, euler on the video scheduler's 4 steps
    from tests.families.test_minimax_parity import FILES, video_sigmas, workflow
    nodes = workflow(FILES["transformer"], video_sigmas(5))
elif family == "mage-flow":
    from tests.fixtures.mage_family import workflow
    nodes = workflow(steps=4)
elif family == "omnigen2":
    from tests.fixtures.omnigen2_family import workflow
    nodes = workflow(steps=4)
elif family == "boogu":
    from tests.fixtures.boogu_family import workflow
    nodes = workflow(steps=4)
elif family == "anima":  # cfg 4 with a negative, as its templates
    from tests.families.test_anima_parity import split_workflow
    nodes = split_workflow(steps=4)
elif family == "ernie-image":
    from tests.families.test_ernie_parity import split_workflow
    nodes = split_workflow(steps=4)
elif family == "z-image":
    from tests.families.test_zimage_parity import split_workflow
    nodes = split_workflow(steps=4)
elif family in ("z-image-controlnet", "qwen-image-controlnet"):  # a model patch applied
    from tests.families.test_model_patches import control_picture, with_patch
    from tests.fixtures import model_patch_files as files
    picture = os.path.join(root, "control.png")
    control_picture(__import__("pathlib").Path(picture))
    if family == "z-image-controlnet":
        from tests.families.test_zimage_parity import split_workflow
        nodes = with_patch(split_workflow(steps=4), files.ZIMAGE_PATCH, picture)
    else:
        from tests.families.test_qwen_image_parity import split_workflow
        nodes = with_patch(split_workflow(steps=4), files.QWEN_PATCH, picture)
elif family == "marigold-v2":  # depth from a 64x64 image: one velocity step (the template's)
    from PIL import Image
    from tests.families.test_marigold_templates import workflow
    picture = os.path.join(root, "marigold.png")
    Image.new("RGB", (64, 64), (90, 140, 200)).save(picture)
    nodes = workflow(picture)
elif family == "lotus-d":  # depth from a 64x64 image in one step (the template's graph)
    from PIL import Image
    from tests.families.test_lotus_depth import lotus_nodes
    picture = os.path.join(root, "lotus.png")
    Image.new("RGB", (64, 64), (90, 140, 200)).save(picture)
    nodes = lotus_nodes(__import__("pathlib").Path(picture))["nodes"]
elif family == "sam3":  # SAM 3.1 on a 64x64 image at SAM 3's 1008, two refinements (template)
    from PIL import Image
    picture = os.path.join(root, "sam3.png")
    Image.new("RGB", (64, 64), (90, 140, 200)).save(picture)
    nodes = {{
        "ckpt": {{"type": "CheckpointLoader",
                  "inputs": {{"name": "sam3.1_multiplex_fp16.safetensors"}}}},
        "text": {{"type": "TextEncode", "inputs": {{"clip": ["ckpt", "clip"], "text": "guitar"}}}},
        "image": {{"type": "LoadImage", "inputs": {{"image": picture}}}},
        "dec": {{"type": "SAM3Detect", "inputs": {{"model": ["ckpt", "model"],
                 "image": ["image", "image"], "conditioning": ["text", "conditioning"]}}}},
    }}
elif family == "da3-mono":  # DA3 Mono on a 64x64 image at 504 (the template's)
    from PIL import Image
    picture = os.path.join(root, "da3.png")
    Image.new("RGB", (64, 64), (90, 140, 200)).save(picture)
    nodes = {{
        "model": {{"type": "LoadDA3Model",
                   "inputs": {{"model_name": "depth_anything_3_mono_large.safetensors"}}}},
        "image": {{"type": "LoadImage", "inputs": {{"image": picture}}}},
        "geometry": {{"type": "DA3Inference", "inputs": {{"da3_model": ["model", "da3_model"],
                      "image": ["image", "image"]}}}},
        "dec": {{"type": "DA3Render", "inputs": {{"da3_geometry": ["geometry", "da3_geometry"]}}}},
    }}
elif family == "lumina2":
    from tests.families.test_lumina2_parity import split_workflow
    os.environ["EASEL_GEMMA_TOKENIZER"] = os.path.join(root, "tokenizers", "gemma")
    nodes = split_workflow(steps=4)
else:
    from tests.families.workflows import txt2img
    nodes = txt2img(family + ".safetensors", steps=4)
result = executor.run({{"format": "easel.workflow", "version": 1, "nodes": nodes}},
                      targets=["dec"], keep_values=True)
assert result.status == "succeeded", result.failures
peak = status("VmHWM")
print(json.dumps({{"floor_kib": floor, "peak_kib": peak}}))
"""


def build(families: list[str], root: Path) -> None:
    from tests.fixtures import (
        chroma_family,
        flux2_family,
        flux_family,
        hidream_family,
        sd3_family,
        sd_family,
    )

    sd_family.write_comfy_tokenizer(root / "ComfyUI")
    flux_family.write_comfy_t5_tokenizer(root / "ComfyUI")
    dev = large = None
    flux2_built = False
    for family in families:
        if family.startswith("flux3"):  # base and distilled share one build
            from tests.fixtures import flux3_family

            if not (root / "models" / "text_encoders" / flux3_family.TEXT_FILE).exists():
                flux3_family.build(root)
            continue
        if family.startswith("flux2"):  # Flux.2 dev and Klein share one build
            if not flux2_built:
                flux2_family.build(root)
                flux2_built = True
            continue
        if family == "lotus-d":  # the Lotus UNet, the SD VAE and an SD 2 checkpoint
            from tests.fixtures import lotus_family

            lotus_family.build(root)
            continue
        if family == "hidream-dev":  # HiDream's files, and its Llama tokenizer in the install
            hidream_family.llama_tokenizer(
                root / "ComfyUI" / "comfy" / "text_encoders" / "llama_tokenizer"
            )
            hidream_family.write_files(hidream_family.build_pipe(root), root)
            continue
        if family == "chroma":
            chroma_family.write_files(chroma_family.build_pipe(root), root)
            continue
        if family == "qwen-image":  # its files, and the Qwen2 tokenizer in the install
            from tests.fixtures import qwen_image_family

            qwen_image_family.build(root)
            continue
        if family == "qwen-image-layered":  # its files, the tokenizer, an input image
            from tests.families.test_qwen_layered_parity import build as build_layered

            build_layered(root)
            continue
        if family == "qwen-image-2.1":  # its files, and the Qwen2 tokenizer in the install
            from tests.fixtures import qwen_image21_family

            qwen_image21_family.build(root)
            continue
        if family == "longcat-image":  # its files, and the Qwen2 tokenizer in the install
            from tests.fixtures import longcat_family

            longcat_family.build(root)
            continue
        if family == "ovis-image":  # its files, and the Qwen2 tokenizer in the install
            from tests.fixtures import ovis_family

            ovis_family.build(root)
            continue
        if family == "kandinsky5-image":  # its files, and both tokenizers in the install
            from tests.fixtures import kandinsky5_family

            kandinsky5_family.build(root)
            continue
        if family == "hunyuan-video-1.5":  # its files, and the Qwen2 tokenizer in the install
            from tests.fixtures import hunyuan15_family

            hunyuan15_family.build(root)
            continue
        if family == "joyimage-edit":  # its files, and the Qwen2 tokenizer in the install
            from tests.fixtures import joyimage_family

            joyimage_family.build(root)
            continue
        if family == "chrono-edit":  # its files, the T5 tokenizer standing for UMT5's
            from tests.fixtures import wan_family

            wan_family.build(root)
            continue
        if family == "krea2":  # its files, and the Qwen2 tokenizer in the install
            from tests.fixtures import krea2_family

            krea2_family.build(root)
            continue
        if family == "ideogram4":  # its files, and the Qwen2 tokenizer in the install
            from tests.fixtures import ideogram4_family

            ideogram4_family.build(root)
            continue
        if family == "fibo2":  # its files, and the Qwen2 tokenizer in the install
            from tests.fixtures import fibo2_family

            fibo2_family.build(root)
            continue
        if family == "minimax-h3":  # its files, and the Qwen2 tokenizer in the install
            from tests.fixtures import minimax_family

            minimax_family.build(root)
            continue
        if family == "mage-flow":  # its files (the Mage-VAE's too), the Qwen2 tokenizer
            from tests.fixtures import mage_family

            mage_family.build(root)
            continue
        if family == "omnigen2":  # its files, and the Qwen2 tokenizer in the install
            from tests.fixtures import omnigen2_family

            omnigen2_family.build(root)
            continue
        if family == "boogu":  # its files, and the Qwen2 tokenizer in the install
            from tests.fixtures import boogu_family

            boogu_family.build(root)
            continue
        if family == "anima":  # its files, the Qwen2 and T5 tokenizers in the install
            from tests.fixtures import anima_family

            anima_family.build(root)
            continue
        if family == "ernie-image":  # its files (the tekken tokenizer inside Ministral's)
            from tests.fixtures import ernie_family

            ernie_family.build(root)
            continue
        if family in ("z-image-controlnet", "qwen-image-controlnet"):  # + a model patch
            from safetensors.torch import save_file

            from tests.fixtures import lumina_family, model_patch_files, qwen_image_family

            patches = root / "models" / "model_patches"
            patches.mkdir(parents=True, exist_ok=True)
            if family == "z-image-controlnet":
                if not (root / "models" / "text_encoders" / "qwen_3_4b.safetensors").exists():
                    zimage = lumina_family.build_zimage(root)
                    lumina_family.build_lumina2(root, zimage.pipe.vae)
                transformer = lumina_family.zimage_transformer()
                controlnet = model_patch_files.zimage_controlnet(transformer)
                state = {k: v.contiguous() for k, v in controlnet.state_dict().items()}
                save_file(state, str(patches / model_patch_files.ZIMAGE_PATCH))
            else:
                if not (root / "models" / "diffusion_models" / "qwen_image.safetensors").exists():
                    qwen_image_family.build(root)
                state = model_patch_files.qwen_blockwise_state(qwen_image_family._transformer())
                save_file(state, str(patches / model_patch_files.QWEN_PATCH))
            continue
        if family == "sam3":  # the tiny SAM 3.1 file the template names, the CLIP tokenizer
            from tests.fixtures import sam3_files
            from tests.fixtures.sd_family import write_comfy_tokenizer

            sam3_files.build(root, "sam3.1_multiplex_fp16.safetensors", sam31=True)
            write_comfy_tokenizer(root / "ComfyUI")
            continue
        if family == "da3-mono":  # the tiny DA3 Mono file the template names
            from tests.fixtures import da3_files

            da3_files.write(
                root, "depth_anything_3_mono_large.safetensors", da3_files.comfy_state()
            )
            continue
        if family == "marigold-v2":  # Qwen-Image-Edit, the task LoRAs, VAEs and prompts
            from tests.families import test_marigold_templates

            test_marigold_templates.build(root)
            continue
        if family in ("z-image", "lumina2"):  # built together (they share the Flux VAE)
            from tests.fixtures import lumina_family

            if not (root / "models" / "text_encoders" / "qwen_3_4b.safetensors").exists():
                zimage = lumina_family.build_zimage(root)
                lumina_family.build_lumina2(root, zimage.pipe.vae)
            continue
        if family == "flux-redux":  # Flux dev's files, a SigLIP and a Redux
            from tests.fixtures import clip_vision_files

            if dev is None:
                dev = flux_family.build("dev", root)
            clip_vision_files.write_redux(root / "models", flux_family.T5_WIDTH)
            continue
        if family.startswith("sd3.5"):
            if large is None:
                large = sd3_family.build("large", root)
            if family == "sd3.5-medium":
                sd3_family.build("medium", root, shared_from=large)
        elif family.startswith("flux"):
            if dev is None:
                dev = flux_family.build("dev", root)
            if family == "flux-schnell":
                flux_family.build("schnell", root, shared_from=dev)
        else:
            sd_family.build(family, root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="flux-dev,flux-schnell,sd1")
    args = parser.parse_args()
    families = [f for f in args.families.split(",") if f]
    print(
        f"Easel peak RSS per family on {platform.node()} ({platform.machine()}, "
        f"Python {platform.python_version()}), tiny random models, CPU fp32, "
        "64x64, 4 steps"
    )
    for family in families:
        # Each family in a folder of its own: the families' tiny tokenizers share ComfyUI's
        # folder names (a Qwen tokenizer of one fixture is not another's).
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            build([family], root)
            out = subprocess.run(
                [sys.executable, "-c", CHILD.format(root=str(ROOT)), family, str(root)],
                capture_output=True,
                text=True,
                check=False,
                cwd=str(ROOT),
            )
            if out.returncode:
                print(f"  {family:14s} failed: {out.stderr.strip().splitlines()[-1:]}")
                continue
            data = json.loads(out.stdout.strip().splitlines()[-1])
            floor, peak = data["floor_kib"] / 1024, data["peak_kib"] / 1024
            print(
                f"  {family:14s} peak {peak:7.1f} MiB   after imports {floor:7.1f} MiB   "
                f"run {peak - floor:6.1f} MiB"
            )


if __name__ == "__main__":
    main()
