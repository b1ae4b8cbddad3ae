"""Prompt syntax reads as ComfyUI reads it (comfy/sd1_clip.py token_weights and friends): the
expected lists are ComfyUI's own documented examples plus its behaviour on the edge cases."""

from __future__ import annotations

import pytest

from easel.models.prompt_syntax import (
    Embedding,
    Text,
    embedding_names,
    glued_embeddings,
    parse_prompt,
    weighted_segments,
)


def segments(text: str) -> list[tuple[str, float]]:
    return [(s.text, round(s.weight, 10)) for s in weighted_segments(text)]


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a red circle", [("a red circle", 1.0)]),
        ("(foo)", [("foo", 1.1)]),
        ("(foo)(bar)", [("foo", 1.1), ("bar", 1.1)]),
        ("(foo:2.0)", [("foo", 2.0)]),
        ("((foo))", [("foo", 1.21)]),
        ("((foo):1.1)", [("foo", 1.21)]),
        ("((foo:1.1))", [("foo", 1.1)]),
        ("(foo:0.0)", [("foo", 0.0)]),
        ("((foo:1.0):0.0)", [("foo", 1.0)]),
        (
            "foo ((((lol (cat:666) attack:100)))) baz",
            [("foo ", 1.0), ("lol ", 100.0), ("cat", 666.0), (" attack", 100.0), (" baz", 1.0)],
        ),
        (
            "foo ((((lol (cat:666) attack):100))) baz",
            [("foo ", 1.0), ("lol ", 110.0), ("cat", 666.0), (" attack", 110.0), (" baz", 1.0)],
        ),
    ],
)
def test_weights_follow_comfyui_examples(prompt: str, expected: list[tuple[str, float]]) -> None:
    assert segments(prompt) == expected


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        (r"\(foo\)(bar)", [("(foo)", 1.0), ("bar", 1.1)]),  # escaped brackets are text
        ("a [b] c", [("a [b] c", 1.0)]),  # square brackets are not a weight in ComfyUI
        ("a (b", [("a ", 1.0), ("(b", 1.0)]),  # an unclosed bracket stays text
        ("a) (b)", [("a) (b)", 1.0)]),  # a stray ")" turns off grouping after it
        ("(:1.2)", [(":1.2", 1.1)]),  # a colon first is not a weight
        ("(a:b)", [("a:b", 1.1)]),  # nor is a word after the colon
        ("(red: 1.3 )", [("red", 1.3)]),  # the number may have spaces around it
        ("(red:nan)", [("red:nan", 1.1)]),  # ComfyUI would take nan and ruin the image
        ("(time: 12:30)", [("time: 12", 30.0)]),  # the last colon counts
        ("", []),
    ],
)
def test_edge_cases_read_as_comfyui_does(prompt: str, expected: list[tuple[str, float]]) -> None:
    assert segments(prompt) == expected


def test_embeddings_are_found_at_the_start_and_after_whitespace() -> None:
    assert parse_prompt("embedding:foo a cat, embedding:bar.pt") == [
        Embedding("foo"),
        Text("a cat,"),
        Embedding("bar.pt"),
    ]
    assert parse_prompt("photo (embedding:style:1.2) x") == [
        Text("photo "),
        Embedding("style", 1.2),
        Text(" x"),
    ]
    assert parse_prompt("(embedding:sub/style.safetensors)") == [
        Embedding("sub/style.safetensors", 1.1)
    ]


def test_embedding_names_end_at_whitespace_or_lora_brackets() -> None:
    assert parse_prompt("embedding:foo<lora:x:1> cat") == [Embedding("foo"), Text("<lora:x:1> cat")]
    assert parse_prompt("embedding:foo[x]") == [Embedding("foo"), Text("[x]")]
    assert parse_prompt("embedding:foo\nbar") == [Embedding("foo"), Text("bar")]


def test_trailing_commas_are_retried_without_and_kept_as_text() -> None:
    (piece, rest) = parse_prompt("embedding:foo,, cat")
    assert piece == Embedding("foo,,") and rest == Text("cat")
    assert piece.candidates() == [("foo,,", ""), ("foo", ",,")]


def test_glued_and_empty_references_are_text_with_a_warning() -> None:
    assert parse_prompt("red,embedding:foo") == [Text("red,embedding:foo")]
    assert glued_embeddings("red,embedding:foo (embedding:ok:1.2) embedding:fine") == [
        "embedding:foo"
    ]
    assert parse_prompt("a embedding:") == [Text("a "), Text("embedding:")]
    assert glued_embeddings("a embedding: b") == []


def test_embedding_names_lists_each_once() -> None:
    assert embedding_names("embedding:a (embedding:b:1.2) embedding:a") == ["a", "b"]
