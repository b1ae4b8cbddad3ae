"""Declaring nodes: annotations become typed inputs, schemas and checks."""

from __future__ import annotations

from typing import Literal

import pytest

import easel
from easel.core.context import Context
from easel.core.node import NodeDeclarationError
from easel.core.types import Latent


def test_ten_line_node_gives_schema():
    @easel.node(category="math", outputs={"sum": float})
    def Add(a: float = 0.0, b: float = easel.Input(1.0, ge=0, le=10, step=0.5)) -> dict:
        """Add two numbers."""
        return {"sum": a + b}

    schema = Add.schema()
    assert schema["type"] == "Add" and schema["category"] == "math"
    assert schema["description"] == "Add two numbers."
    assert schema["inputs"]["b"] == {
        "type": "FLOAT",
        "required": False,
        "default": 1.0,
        "minimum": 0,
        "maximum": 10,
        "step": 0.5,
    }
    assert schema["outputs"] == {"sum": "FLOAT"}
    assert Add.call(Context(), {"a": 1.0, "b": 2.0}) == {"sum": 3.0}


def test_socket_inputs_enums_optional_multiline_widgets():
    @easel.node(outputs={"latent": Latent}, version=3, deterministic=False)
    def Sample(
        ctx: Context,
        latent: Latent,
        text: str = easel.Input("", multiline=True),
        sampler: Literal["euler", "heun"] = "euler",
        seed: int = easel.Input(0, ge=0, widget="seed"),
        negative: Latent | None = None,
    ) -> dict:
        return {"latent": latent}

    inputs = Sample.schema()["inputs"]
    assert inputs["latent"] == {"type": "LATENT", "required": True, "link_only": True}
    assert inputs["text"]["multiline"] is True
    assert inputs["sampler"]["choices"] == ["euler", "heun"]
    assert inputs["seed"]["widget"] == "seed"
    assert inputs["negative"]["required"] is False
    assert Sample.wants_context and Sample.version == 3 and not Sample.deterministic


def test_return_annotation_names_single_output():
    @easel.node
    def Make() -> Latent:
        return {"samples": 1}

    assert Make.outputs == {"latent": "LATENT"}
    assert Make.call(Context(), {}) == {"latent": {"samples": 1}}


def test_dynamic_choices_are_read_each_time():
    names = ["a"]

    @easel.node(outputs={"name": str})
    def Pick(name: str = easel.Input("a", choices=lambda: names)) -> str:
        return name

    assert Pick.validate_literals({"name": "b"})[1]
    names.append("b")
    assert Pick.validate_literals({"name": "b"}) == ({"name": "b"}, [])
    assert Pick.schema()["inputs"]["name"]["choices"] == ["a", "b"]


def test_declaration_mistakes_are_explained():
    with pytest.raises(NodeDeclarationError, match="needs a type annotation"):

        @easel.node
        def NoHint(x) -> None:  # type: ignore[no-untyped-def]
            return None

    with pytest.raises(NodeDeclarationError, match="reserved"):

        @easel.node(outputs={"ui": int})
        def Reserved() -> None:
            return None

    with pytest.raises(NodeDeclarationError, match="annotate with"):

        @easel.node
        def Weird(x: dict) -> None:
            return None


def test_wrong_return_shape_is_a_node_error():
    @easel.node(outputs={"a": int, "b": int})
    def Two() -> dict:
        return {"a": 1}

    with pytest.raises(easel.NodeError, match="declared"):
        Two.call(Context(), {})
