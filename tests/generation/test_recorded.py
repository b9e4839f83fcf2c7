"""The recorded backend replays the model's own statements, deterministically, with honest provenance,
and runs through the same service path as any other backend."""
from __future__ import annotations

import json

import pytest

from core.flow import Phase
from deliberation.models import Candidate, Opinion
from generation.backends import GenerationError, GenerationRequest, backend_names, get_backend
from generation.backends.recorded import DEFAULT_RECORDING, RecordedBackend, load_recording
from generation.prompts import CONSENSUS, STOP_SEQUENCES, render_consensus
from generation.recording import record_statements
from generation.services import candidates_generate

from ..factories import make_group


def request(question: str, seed: int, opinions=("We should act now.", "We should wait and see.")):
    return GenerationRequest(messages=render_consensus(CONSENSUS, question, list(opinions)), seed=seed,
                             stop=STOP_SEQUENCES)


def test_committed_recording_holds_real_model_statements():
    header, entries = load_recording(DEFAULT_RECORDING)
    assert "SmolLM2" in header["model_id"] and header["recorded_on"]
    assert 30 <= len(entries) <= 60
    assert all("SmolLM2" in e.model_id and e.text.startswith("We") for e in entries)
    assert len({e.question for e in entries}) >= 8


def test_replay_is_deterministic_matches_the_question_and_names_itself_honestly():
    backend = get_backend("recorded")
    assert "recorded" in backend_names()
    _, entries = load_recording(DEFAULT_RECORDING)
    question = entries[0].question
    first = backend.generate([request(question, s) for s in range(12)])
    again = backend.generate([request(question, s) for s in range(12)])
    assert [r.text for r in first] == [r.text for r in again]
    recorded_for_question = {e.text for e in entries if e.question == question}
    assert {r.text for r in first} <= recorded_for_question
    assert len({r.text for r in first}) > 1  # seeds pick different recorded statements
    assert all(r.model_id.startswith("recorded:") and "SmolLM2" in r.model_id for r in first)
    assert all(r.extra["backend"] == "recorded" and r.extra["question_matched"] for r in first)
    other = backend.generate([request("Should cities ban cars from their centres?", 1)])[0]
    assert other.text in {e.text for e in entries} and other.extra["question_matched"] is False


def test_bad_recordings_fail_clearly(tmp_path):
    with pytest.raises(GenerationError, match="not found"):
        RecordedBackend(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "header"}\n{"question": "q"}\n')
    with pytest.raises(GenerationError, match="line 2"):
        RecordedBackend(bad)


def test_record_statements_writes_what_a_backend_produced(tmp_path):
    class Fake:  # stands in for the embedded model; the committed file above is the real thing
        def generate(self, requests):
            return get_backend("extractive").generate(requests)

    out = tmp_path / "rec.jsonl"
    assert record_statements(out, questions=2, per_question=2, backend=Fake(), progress=False) == 4
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["kind"] == "header" and rows[0]["entries"] == 4
    replayed = RecordedBackend(out).generate([request(rows[1]["question"], 3)])[0]
    assert replayed.text in {r["text"] for r in rows[1:]}


@pytest.mark.django_db
def test_service_stores_recorded_candidates_with_provenance():
    group, members = make_group(n=3)
    study = group.study
    group.arm.generation_backend = "recorded"  # generation reads the group's arm (deliberation.models.StudyArm)
    group.arm.save()
    for member in members:
        Opinion.objects.create(group=group, participant=member, text="We should help people pay for food.",
                               response_seconds=1.0)
    group.phase = Phase.GENERATING
    group.save()
    assert candidates_generate(group_id=group.pk, round=1) == study.num_candidates
    candidates = list(Candidate.objects.filter(group=group, round=1))
    _, entries = load_recording(DEFAULT_RECORDING)
    assert all(c.backend == "recorded" and c.model_id.startswith("recorded:") for c in candidates)
    assert all(c.raw_text in {e.text for e in entries} for c in candidates)
    group.refresh_from_db()
    assert group.phase == Phase.RATING
