"""Deterministic replay: regenerate stored candidates from their provenance and compare the texts."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.apps import apps

from deliberation.models import Candidate

from .backends import get_backend
from .backends.base import ChatMessage, GenerationRequest


@dataclass
class ReplayRow:
    candidate_id: int
    round: int
    index: int
    seed: int
    match: bool
    stored: str
    replayed: str


def request_from(candidate: Candidate) -> GenerationRequest:
    params = candidate.params or {}
    return GenerationRequest(
        messages=tuple(ChatMessage(m["role"], m["content"]) for m in candidate.prompt),
        seed=candidate.seed, max_new_tokens=int(params.get("max_new_tokens", 160)),
        temperature=float(params.get("temperature", 0.8)), top_p=float(params.get("top_p", 0.95)),
        stop=tuple(params.get("stop") or ()),
    )


def backend_options_from(candidate: Candidate, backend_name: str) -> dict:
    """The embedded backend's options that reproduce a candidate: the fine-tuned generator version its
    provenance names (``params["generator_version"]``), if any; its checkpoint is looked up in the registry
    (falling back to the folder recorded with the candidate)."""
    params = candidate.params or {}
    version = params.get("generator_version")
    if backend_name != "embedded" or version is None:
        return {}
    # The registry is analysis's model (above generation): named by string, like a foreign key.
    GeneratorModel = apps.get_model("analysis", "GeneratorModel")  # noqa: N806
    registered = GeneratorModel.objects.filter(pk=version).values_list("checkpoint_path", flat=True).first()
    return {"checkpoint": registered or params.get("generator_checkpoint"), "version": version}


def replay_group(group_id: int, *, round: int | None = None, backend_name: str = "embedded") -> list[ReplayRow]:
    """Regenerate the group's candidates with the backend (and the generator version) that wrote them."""
    candidates = Candidate.objects.filter(group_id=group_id).order_by("round", "index")
    if round is not None:
        candidates = candidates.filter(round=round)
    backends: dict = {}

    def backend_for(candidate: Candidate):
        options = backend_options_from(candidate, backend_name)
        key = tuple(sorted(options.items()))
        if key not in backends:
            backends[key] = get_backend(backend_name, **options)
        return backends[key]

    # Rebuild the original batches: one call per (round, attempt), as candidates_generate made them.
    batches: dict[tuple[int, int], list[Candidate]] = defaultdict(list)
    for candidate in candidates:
        batches[(candidate.round, candidate.attempts)].append(candidate)
    rows = []
    for _, batch in sorted(batches.items()):
        results = backend_for(batch[0]).generate([request_from(c) for c in batch])
        for candidate, result in zip(batch, results, strict=True):
            rows.append(ReplayRow(candidate.pk, candidate.round, candidate.index, candidate.seed,
                                  result.text == candidate.raw_text, candidate.raw_text, result.text))
    return rows
