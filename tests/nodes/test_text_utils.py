"""ConcatenateText, ReplaceText, RegexReplace (guarded) and PreviewAsText, as ComfyUI's nodes."""

from __future__ import annotations

import time

import pytest
import torch

from easel.core.node import NodeError
from easel.nodes.text_utils import (
    ConcatenateText,
    PreviewAsText,
    RegexExtract,
    RegexReplace,
    ReplaceText,
    TextLength,
    as_text,
)


def call(node_type, **inputs):
    return node_type.call(None, {**node_type.value_defaults, **inputs})


def test_concatenate_and_replace() -> None:
    assert call(ConcatenateText, a="a cat", b="oil painting", delimiter=", ") == {
        "text": "a cat, oil painting"
    }
    assert call(ConcatenateText, a="x", b="y") == {"text": "xy"}
    assert call(ReplaceText, text="a <style> of <style>", find="<style>", replace="photo") == {
        "text": "a photo of photo"
    }


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        # The templates' patterns: escape quotes, strip a trailing code fence (count 1).
        ({"string": 'say "hi"', "regex_pattern": '"', "replace": '\\\\"'}, 'say \\"hi\\"'),
        (
            {
                "string": "json\n```",
                "regex_pattern": "\\n?```\\s*$",
                "replace": "",
                "case_insensitive": False,
                "count": 1,
            },
            "json",
        ),
        # case-insensitive by default
        ({"string": "A a A", "regex_pattern": "a", "replace": "b"}, "b b b"),
        (
            {"string": "A a A", "regex_pattern": "a", "replace": "b", "case_insensitive": False},
            "A b A",
        ),
        ({"string": "one two", "regex_pattern": "(\\w+) (\\w+)", "replace": "\\2 \\1"}, "two one"),
        ({"string": "a\nb", "regex_pattern": "a.b", "replace": "X", "dotall": True}, "X"),
        ({"string": "x1\nx2", "regex_pattern": "^x", "replace": "y", "multiline": True}, "y1\ny2"),
    ],
)
def test_regex_replace(inputs, expected) -> None:
    assert call(RegexReplace, **inputs) == {"text": expected}


def test_a_runaway_regex_is_stopped_and_named(monkeypatch) -> None:
    from easel.nodes import text_utils

    monkeypatch.setattr(text_utils, "REGEX_TIMEOUT_S", 0.2)  # 2 s in use
    start = time.monotonic()
    with pytest.raises(NodeError) as caught:
        call(RegexReplace, string="a" * 5000 + "!", regex_pattern="(a|aa)+$", replace="")
    assert time.monotonic() - start < 10
    assert caught.value.input == "regex_pattern" and "longer than" in caught.value.message


@pytest.mark.parametrize(
    ("inputs", "input_name"),
    [
        ({"regex_pattern": "(unclosed"}, "regex_pattern"),
        ({"regex_pattern": "x" * 20_000}, "regex_pattern"),
        ({"string": "t" * 2_000_000, "regex_pattern": "t"}, "string"),
        ({"string": "ab", "regex_pattern": "a", "replace": "\\3"}, "replace"),
    ],
)
def test_bad_regex_inputs_name_the_input(inputs, input_name) -> None:
    with pytest.raises(NodeError) as caught:
        call(RegexReplace, **inputs)
    assert caught.value.input == input_name


def test_preview_as_text_shows_values_as_comfyui_does() -> None:
    assert as_text("hi") == "hi" and as_text(3) == "3" and as_text(True) == "True"
    assert as_text(None) == "None"
    assert as_text({"a": [1, 2]}) == '{\n    "a": [\n        1,\n        2\n    ]\n}'
    assert as_text(torch.zeros(2)).startswith("tensor(")
    assert PreviewAsText.call(None, {"source": 1.5}) == {"text": "1.5", "ui": {"text": ["1.5"]}}
    assert PreviewAsText.output_node


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        # The templates' patterns: the text before " --no", a JSON field, a block after "---".
        ({"string": "a castle --no people", "regex_pattern": "^(.+?)(?=\\s+--no)"}, "a castle"),
        (
            {
                "string": '{"lighting": "soft dusk"}',
                "regex_pattern": '"lighting":\\s*"([^"]*)"',
                "mode": "First Group",
                "case_insensitive": False,
            },
            "soft dusk",
        ),
        (
            {
                "string": "intro\n---\nbody",
                "regex_pattern": "(?s)(?<=\\n---\\n)([\\s\\S]*)$",
                "mode": "First Group",
            },
            "body",
        ),
        ({"string": "a1 b2 c3", "regex_pattern": "[a-z]\\d", "mode": "All Matches"}, "a1\nb2\nc3"),
        ({"string": "a1 b2", "regex_pattern": "([a-z])(\\d)", "mode": "All Matches"}, "a\nb"),
        (
            {
                "string": "a1 b2",
                "regex_pattern": "([a-z])(\\d)",
                "mode": "All Groups",
                "group_index": 2,
            },
            "1\n2",
        ),
        ({"string": "a1", "regex_pattern": "([a-z])", "mode": "First Group", "group_index": 3}, ""),
        ({"string": "xyz", "regex_pattern": "q"}, ""),
    ],
)
def test_regex_extract(inputs, expected) -> None:
    assert call(RegexExtract, **inputs) == {"text": expected}


def test_regex_extract_is_guarded_and_length_counts_characters(monkeypatch) -> None:
    from easel.nodes import text_utils

    monkeypatch.setattr(text_utils, "REGEX_TIMEOUT_S", 0.2)
    with pytest.raises(NodeError) as caught:
        call(RegexExtract, string="a" * 5000 + "!", regex_pattern="(a|aa)+$", mode="All Matches")
    assert caught.value.input == "regex_pattern"
    assert call(TextLength, text="naïve") == {"length": 5}
