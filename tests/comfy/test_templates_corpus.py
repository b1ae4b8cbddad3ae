"""scripts/comfy_templates.py: which templates count, and a survey whose figures add up.

The survey of the real corpus runs when the pinned package (the dev extra) is installed; the
selection rules and the report run on a small catalogue written here."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from easel.comfy.convert import to_easel

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "comfy_templates.py"
spec = importlib.util.spec_from_file_location("comfy_templates", SCRIPT)
assert spec is not None and spec.loader is not None
templates = importlib.util.module_from_spec(spec)
sys.modules["comfy_templates"] = templates
spec.loader.exec_module(templates)

SDXL_GRAPH = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "a fox"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["6", 0],
            "latent_image": ["5", 0],
            "seed": 1,
            "steps": 2,
            "cfg": 5.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1.0,
        },
    },
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "x"}},
}


def entry(name: str, models: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "models": models, "mediaType": "image", **extra}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    index = [
        {
            "title": "Image",
            "type": "image",
            "templates": [
                entry(
                    "sdxl_simple",
                    ["SDXL", "Stability"],
                    openSource=True,
                    io={"outputs": [{"mediaType": "image"}]},
                ),
                entry("flux_dev", ["FLUX", "FLUX.1"]),
                entry("sdxl_lcm", ["SDXL"]),
                entry("api_nano", ["Nano Banana"]),  # cloud, by name
                entry("gemini_sheet", ["Gemini"], openSource=False),  # cloud, by the catalogue
                entry("ltx_ingredients", ["LTX-2.3"], io={"outputs": [{"mediaType": "video"}]}),
            ],
        },
        {"title": "Video", "type": "video", "templates": [entry("wan_t2v", ["Wan2.1"])]},
    ]
    (tmp_path / "index.json").write_text(json.dumps(index))
    (tmp_path / "sdxl_simple.json").write_text(json.dumps(SDXL_GRAPH))
    flux = {**SDXL_GRAPH, "4": {"class_type": "FluxLoaderOfTheFuture", "inputs": {}}}
    (tmp_path / "flux_dev.json").write_text(json.dumps(flux))
    lcm = {
        **SDXL_GRAPH,
        "10": {
            "class_type": "ModelSamplingDiscrete",
            "inputs": {"model": ["4", 0], "sampling": "lcm", "zsnr": False},
        },
    }
    (tmp_path / "sdxl_lcm.json").write_text(json.dumps(lcm))
    return tmp_path


def test_only_local_image_templates_count_and_families_come_from_models(corpus) -> None:
    result = templates.survey(corpus)
    assert [(t.name, t.family, t.converted) for t in result.templates] == [
        ("sdxl_simple", "SDXL", True),
        ("flux_dev", "Flux.1", False),
        ("sdxl_lcm", "SDXL", False),
    ]
    assert result.catalogue_size == 7
    assert result.families() == {"SDXL": (1, 2), "Flux.1": (0, 1)}
    assert result.blocking() == [("FluxLoaderOfTheFuture", 1)]
    assert result.blocking_values() == [("ModelSamplingDiscrete.sampling='lcm'", 1)]
    text = templates.report(result, failures=True)
    assert "| SDXL | 1/2 |" in text and "**1/3** (33%; target 80%: not met)" in text
    assert "- `FluxLoaderOfTheFuture`: 1" in text
    assert "- `ModelSamplingDiscrete.sampling='lcm'`: 1" in text
    assert "flux_dev: node '4' (FluxLoaderOfTheFuture)" in text


def test_family_rules() -> None:
    assert templates.family_of(["Chroma", "FLUX"]) == "Chroma"
    assert templates.family_of(["FLUX", "FLUX.2 Klein"]) == "Flux.2"
    assert templates.family_of(["FLUX.1 Kontext", "FLUX"]) == "Flux.1"
    assert templates.family_of(["Qwen", "Qwen-Image-Edit"]) == "Qwen-Image (and Edit)"
    assert templates.family_of(["Z-Image-Turbo"]) == "Z-Image"
    assert templates.family_of(["Ovis-Image"]) == "Ovis-Image"


def test_a_mapped_node_that_easel_lacks_does_not_count_as_converted(corpus, monkeypatch) -> None:
    from easel.comfy import mapping

    spec_map = mapping.NODE_MAPS["SaveImage"]
    monkeypatch.setitem(
        mapping.NODE_MAPS,
        "SaveImage",
        mapping.NodeMap("SaveImageSomewhere", dict(spec_map.inputs), ()),
    )
    [sdxl, _, _] = templates.survey(corpus).templates
    assert not sdxl.converted
    assert sdxl.problems == ["node 9: Easel has no node type 'SaveImageSomewhere'"]


def test_the_command_line(corpus, capsys) -> None:
    assert templates.main(["--templates", str(corpus), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["local_image_templates"] == 3 and printed["converted"] == 1
    assert printed["families"]["SDXL"] == {"converted": 1, "total": 2}
    assert templates.main(["--templates", str(corpus / "missing")]) == 2


@pytest.mark.skipif(
    importlib.util.find_spec(templates.PACKAGE) is None,
    reason="the templates corpus is in the dev extra (installed in CI)",
)
def test_the_survey_of_the_installed_corpus_adds_up() -> None:
    result = templates.survey()
    assert result.version == "0.1.123"  # the pinned version the docs' table is for
    total = len(result.templates)
    assert total > 100  # the catalogue lists ~150 local image templates
    families = result.families()
    assert sum(count for _, count in families.values()) == total
    assert sum(done for done, _ in families.values()) == result.converted
    assert all(0 <= done <= count for done, count in families.values())
    failed = [t for t in result.templates if not t.converted]
    assert all(t.problems for t in failed)
    assert all(not t.problems and not t.blockers for t in result.templates if t.converted)
    assert all(count <= len(failed) for _, count in result.blocking())
    assert all(count <= len(failed) for _, count in result.blocking_values())
    text = templates.report(result)
    assert f"**{result.converted}/{total}**" in text
    for family, (done, count) in families.items():
        assert f"| {family} | {done}/{count} |" in text
    # What counts as converted really converts.
    folder = templates.templates_dir()
    for template in result.templates:
        if template.converted:
            data = json.loads((folder / f"{template.name}.json").read_text(encoding="utf-8"))
            assert to_easel(data)["nodes"]
