"""Extractive baseline backend and the backend registry."""

import pytest

from generation.backends import GenerationRequest, backend_names, get_backend
from generation.backends.extractive import ExtractiveBackend, extract_opinions, first_sentence
from generation.prompts import CONSENSUS, REVISION, render_consensus, render_revision

QUESTION = "Should our city make public transport free?"
OPINIONS = [
    "Free transport helps poorer families. But someone has to pay.",
    "I'd rather spend the money on more buses! Frequency matters most.",
    "Maybe free for students only",
]


def request(seed=1, **kwargs):
    return GenerationRequest(messages=render_consensus(CONSENSUS, QUESTION, OPINIONS), seed=seed, **kwargs)


def test_registry():
    assert backend_names() == ["embedded", "extractive", "openai", "recorded"]
    backend = get_backend("extractive")
    assert isinstance(backend, ExtractiveBackend)
    assert backend.name == "extractive" and backend.model_id == "extractive-baseline-v1"


def test_unknown_backend_lists_known_names():
    with pytest.raises(ValueError, match="embedded, extractive"):
        get_backend("gpt-17")


def test_embedded_backend_is_created_without_loading_the_model():
    backend = get_backend("embedded", repetition_penalty=1.0)
    assert backend.name == "embedded" and backend._model is None


def test_statement_uses_first_sentence_of_each_opinion():
    [result] = get_backend("extractive").generate([request()])
    assert "Free transport helps poorer families." in result.text
    assert "I'd rather spend the money on more buses!" in result.text
    assert "Maybe free for students only." in result.text
    assert "someone has to pay" not in result.text and "Frequency" not in result.text
    assert result.model_id == "extractive-baseline-v1" and result.seed == 1
    assert result.prompt_tokens > 0 and result.completion_tokens == len(result.text.split())
    assert result.latency_ms >= 0


def test_seeded_and_order_independent():
    backend = get_backend("extractive")
    seeds = list(range(20))
    forward = backend.generate([request(s) for s in seeds])
    backward = backend.generate([request(s) for s in reversed(seeds)])[::-1]
    assert [r.text for r in forward] == [r.text for r in backward]
    assert len({r.text for r in forward}) > 1  # different seeds, different orders


def test_revision_prompt_uses_opinions_not_critiques():
    messages = render_revision(REVISION, QUESTION, OPINIONS, "We want buses.", ["Critique one is here."])
    [result] = get_backend("extractive").generate([GenerationRequest(messages=messages, seed=3)])
    assert "Critique one" not in result.text and "Maybe free for students only." in result.text


def test_budget_and_stop_strings_are_honoured():
    [short] = get_backend("extractive").generate([request(max_new_tokens=5)])
    assert len(short.text.split()) == 5
    [stopped] = get_backend("extractive").generate([request(stop=("Free",))])
    assert "Free" not in stopped.text


def test_no_opinions_gives_empty_text():
    [result] = get_backend("extractive").generate(
        [GenerationRequest(messages=render_consensus(CONSENSUS, QUESTION, []), seed=0)]
    )
    assert result.text == ""


def test_helpers():
    assert extract_opinions("Q\n- a\n- b\n\nCritiques:\n- c") == ["a", "b"]
    assert first_sentence("hello there. more") == "Hello there."
    assert first_sentence("no end") == "No end."
