"""Question corpus: generated questions, subtopic clusters and subtopic-held-out splits."""
from __future__ import annotations

import json
from collections import Counter
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from analysis.corpus import (
    CorpusError,
    agreement,
    cluster_embeddings,
    parse_generated,
    questions_expand,
    relabel_by_size,
    subtopic_split,
)
from deliberation.models import Question
from deliberation.services import SubmissionError, next_question
from generation.backends.base import GenerationResult
from tests.factories import make_study

HABERMAS = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "habermas"
            / "230118_chinchilla_questions.json")
needs_habermas = pytest.mark.skipif(not HABERMAS.exists(), reason="Habermas questions file not present")


# --- pure parts ------------------------------------------------------------------------------------
def test_parse_generated_drops_and_counts_non_questions():
    parsed = parse_generated("1. Should cities ban cars?\n- We share several views. Is tax fair?\n\n"
                             "Here are some questions:\nWhy?\n\"Should zoos exist?\"")
    assert parsed.questions == ["Should cities ban cars?", "Is tax fair?", "Should zoos exist?"]
    assert parsed.not_questions == 3  # the statement, the preamble, the one-word "question"
    assert parse_generated("").questions == [] and parse_generated("   \n").not_questions == 0


def test_subtopic_split_holds_out_whole_subtopics_reproducibly():
    subtopics = [i % 10 for i in range(100)]
    split = subtopic_split(subtopics, test_share=0.2, seed=3)
    assert split == subtopic_split(subtopics, test_share=0.2, seed=3)
    assert Counter(split.values()) == {"test": 2, "train": 8}
    assert split != subtopic_split(subtopics, test_share=0.2, seed=4) or True  # another seed may differ
    with pytest.raises(CorpusError, match="between 0 and 1"):
        subtopic_split(subtopics, test_share=1.5, seed=0)
    with pytest.raises(CorpusError, match="two subtopics"):
        subtopic_split([1, 1, 1], test_share=0.2, seed=0)


def test_cluster_embeddings_finds_separated_groups():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    emb = np.concatenate([c + 0.05 * rng.normal(size=(25, 16)) for c in centres])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    truth = np.repeat(np.arange(4), 25)
    labels = cluster_embeddings(emb, 4, seed=0, runs=5)
    assert agreement(labels, truth)["nmi"] == pytest.approx(1.0)
    assert list(relabel_by_size(np.array([5, 5, 2, 2, 2]))) == [1, 1, 0, 0, 0]
    with pytest.raises(CorpusError, match="lower --k"):
        cluster_embeddings(emb[:3], 4)


# --- commands on the database ------------------------------------------------------------------------
def _questions(n_topics=3, per_topic=4):
    subjects = ["cars in city centres", "taxes on sugar", "homework in primary school", "zoos and aquariums"]
    for t in range(n_topics):
        for i in range(per_topic):
            Question.objects.create(text=f"Question {i} about {subjects[t]}?", topic=t)


@pytest.mark.django_db
def test_split_questions_and_live_groups_draw_from_train():
    _questions()
    for i, q in enumerate(Question.objects.order_by("id")):
        q.subtopic = i // 4
        q.save()
    out = StringIO()
    call_command("split_questions", "--by", "subtopic", "--test-share", "0.3", "--seed", "1", stdout=out)
    assert "train 8 questions, test 4 questions (1 of 3 subtopics held out)" in out.getvalue()
    by_subtopic = {}
    for q in Question.objects.all():
        by_subtopic.setdefault(q.subtopic, set()).add(q.subtopic_split)
    assert all(len(v) == 1 for v in by_subtopic.values())  # whole subtopics

    study = make_study("corpus-split", questions_from_train_split=True)
    study.questions.add(*Question.objects.exclude(subtopic=None))
    for _ in range(5):
        assert next_question(study).subtopic_split == "train"
    legacy = make_study("corpus-legacy")  # existing studies: round-robin over all questions
    assert legacy.questions_from_train_split is False
    assert next_question(legacy).subtopic_split == ""

    Question.objects.update(subtopic_split="test")
    with pytest.raises(SubmissionError, match="train split"):
        next_question(study)


@pytest.mark.django_db
def test_split_questions_bad_options():
    with pytest.raises(CommandError, match="cluster_questions first"):
        call_command("split_questions", "--test-share", "0.2")
    _questions()
    Question.objects.update(subtopic=1)
    with pytest.raises(CommandError, match="between 0 and 1"):
        call_command("split_questions", "--test-share", "0")
    with pytest.raises(CommandError, match="two subtopics"):
        call_command("split_questions", "--test-share", "0.2")


@pytest.mark.django_db
def test_cluster_questions_stores_subtopics_and_reports_nmi():
    _questions(n_topics=4, per_topic=5)
    out = StringIO()
    call_command("cluster_questions", "--k", "4", "--runs", "5", stdout=out)
    labels = dict(Question.objects.values_list("topic", "subtopic").distinct())
    assert Question.objects.filter(subtopic=None).count() == 0
    assert "20 questions in 4 subtopics" in out.getvalue() and "NMI" in out.getvalue()
    assert len(labels) == 4
    with pytest.raises(CommandError, match="lower --k"):
        call_command("cluster_questions", "--k", "50")
    with pytest.raises(CommandError, match="--runs"):
        call_command("cluster_questions", "--runs", "0")


@pytest.mark.django_db
def test_cluster_questions_without_questions():
    with pytest.raises(CommandError, match="import_questions first"):
        call_command("cluster_questions")


@pytest.mark.django_db
def test_import_questions_keeps_computed_fields(tmp_path):
    path = tmp_path / "q.json"
    path.write_text(json.dumps([{"question": "Should zoos exist?", "topic": 3, "split": "train"}]))
    call_command("import_questions", str(path), stdout=StringIO())
    Question.objects.update(subtopic=7, subtopic_split="test", provenance={"x": 1})
    path.write_text(json.dumps([{"question": "Should zoos exist?", "topic": 4, "split": "iid_test"}]))
    call_command("import_questions", str(path), stdout=StringIO())
    q = Question.objects.get()
    assert (q.topic, q.subtopic, q.subtopic_split, q.provenance) == (4, 7, "test", {"x": 1})


# --- expansion ------------------------------------------------------------------------------------------
class _ScriptedBackend:
    """Returns canned outputs in turn (to test the filtering); the real backends are tested below."""

    name = "scripted"
    model_id = "scripted-v1"

    def __init__(self, outputs):
        self.outputs = list(outputs)
        self.requests = []

    def generate(self, requests):
        self.requests.extend(requests)
        return [GenerationResult(text=self.outputs.pop(0), model_id=self.model_id, seed=r.seed, latency_ms=1.0,
                                 prompt_tokens=1, completion_tokens=1) for r in requests]


@pytest.mark.django_db
def test_expand_keeps_new_questions_with_provenance_and_counts_drops():
    study = make_study("corpus-expand")
    seed_q = study.questions.get()
    backend = _ScriptedBackend([
        "1. Should public transport be free for everyone?\n"
        "2. Should public transport be free for everyone?\n"  # duplicate of the line above
        "3. Should we remove all taxes on food and groceries?\n"  # duplicate of the seed question
        "4. Should we remove all the taxes on food and groceries??\n"  # near-duplicate of the seed
        "Here are my questions.\n"  # not a question
        "5. Should voting be compulsory in national elections?",
    ])
    report = questions_expand(study=study, per_question=5, seed=1, backend=backend)
    assert (report.prompts, report.created, report.duplicates, report.not_questions) == (1, 2, 2, 1)
    assert report.near_duplicates == 1 and report.empty == 0
    new = list(Question.objects.filter(pk__in=report.question_ids).order_by("id"))
    assert [q.text for q in new] == ["Should public transport be free for everyone?",
                                     "Should voting be compulsory in national elections?"]
    prov = new[0].provenance
    assert prov["seed_question_ids"] == [seed_q.pk]
    assert prov["template"]["kind"] == "question_generation" and prov["template"]["version"] == 1
    assert prov["model"] == "scripted-v1" and prov["seed"] == backend.requests[0].seed
    assert set(study.questions.all()) == {seed_q, *new}
    assert new[0].subtopic is None and new[0].topic is None
    assert "Write 5 new questions" in backend.requests[0].messages[1].content
    assert "- Should we remove all taxes on food and groceries?" in backend.requests[0].messages[1].content

    empty = questions_expand(study=study, per_question=2, limit=1, backend=_ScriptedBackend([""]))
    assert (empty.empty, empty.created) == (1, 0)


@pytest.mark.django_db
def test_expand_questions_through_the_extractive_backend():
    """The extractive backend copies the prompt's example questions: all are dropped as duplicates."""
    study = make_study("corpus-extractive")
    study.questions.add(Question.objects.create(text="Should zoos be closed down?"),
                        Question.objects.create(text="Should homework be banned in primary schools?"))
    out = StringIO()
    call_command("expand_questions", "--study", study.slug, "--per-question", "3", "--examples", "1", stdout=out)
    assert "3 prompts: created 0; dropped 0 empty, 3 not questions, 6 duplicates" in out.getvalue()
    assert Question.objects.count() == 3


@pytest.mark.django_db
def test_expand_questions_bad_options():
    with pytest.raises(CommandError, match="No study"):
        call_command("expand_questions", "--study", "nope", "--per-question", "2")
    study = make_study("corpus-bad")
    with pytest.raises(CommandError, match="at least 1"):
        call_command("expand_questions", "--study", study.slug, "--per-question", "0")
    with pytest.raises(CommandError, match="threshold"):
        call_command("expand_questions", "--study", study.slug, "--per-question", "2", "--threshold", "1.5")
    study.questions.clear()
    with pytest.raises(CommandError, match="no questions"):
        call_command("expand_questions", "--study", study.slug, "--per-question", "2")


@pytest.mark.model
@pytest.mark.django_db
def test_expand_questions_through_smollm2():
    study = make_study("corpus-smol", generation_backend="embedded")
    report = questions_expand(study=study, per_question=3, seed=0)
    assert report.prompts == 1
    assert report.created + report.duplicates + report.near_duplicates + report.not_questions + report.empty >= 1
    for q in Question.objects.filter(pk__in=report.question_ids):
        assert q.text.endswith("?") and q.provenance["model"].startswith("HuggingFaceTB/SmolLM2")


# --- the real Habermas file ---------------------------------------------------------------------------
@needs_habermas
@pytest.mark.django_db
@pytest.mark.slow  # embeds and clusters the whole Habermas question file
def test_cluster_and_split_the_habermas_questions():
    """The first 600 questions of the real file (11 topic ids; the file is sorted by topic), for time on a CPU:
    cluster, split; re-importing keeps the subtopics. benchmarks/topics.py clusters all 5,645."""
    call_command("import_questions", str(HABERMAS), "--limit", "600", stdout=StringIO(), verbosity=0)
    assert Question.objects.count() == 600
    k = Question.objects.values("topic").distinct().count()
    out = StringIO()
    call_command("cluster_questions", "--k", str(k), "--runs", "10", stdout=out, verbosity=0)
    assert f"600 questions in {k} subtopics" in out.getvalue()
    nmi = float(out.getvalue().split("NMI ")[1].split(",")[0])
    assert nmi > 0.6
    assert Question.objects.values("subtopic").distinct().count() == k
    call_command("split_questions", "--by", "subtopic", "--test-share", "0.2", "--seed", "0", stdout=StringIO())
    test_share = Question.objects.filter(subtopic_split="test").count() / 600
    assert 0.2 <= test_share < 0.5
    assert Question.objects.filter(subtopic_split="").count() == 0
    before = dict(Question.objects.values_list("id", "subtopic"))
    call_command("import_questions", str(HABERMAS), "--limit", "600", stdout=StringIO(), verbosity=0)
    assert dict(Question.objects.values_list("id", "subtopic")) == before


@pytest.mark.django_db
def test_reward_model_topic_holdout_uses_subtopics():
    from analysis.reward.registry import group_holdout_units
    from tests.factories import make_group

    group, _ = make_group()
    question = group.question
    question.topic, question.subtopic = 5, 42
    question.save()
    assert group_holdout_units(group_ids=[group.pk], holdout="topic") == {group.pk: ("subtopic", 42)}
    question.subtopic = None  # not clustered: held out with its topic (registry.group_holdout_units)
    question.save()
    assert group_holdout_units(group_ids=[group.pk], holdout="topic") == {group.pk: ("topic", 5)}
    question.topic = None  # neither: a unit of its own
    question.save()
    assert group_holdout_units(group_ids=[group.pk], holdout="topic") == {group.pk: ("question", question.pk)}


@pytest.mark.parametrize("command", ["expand_questions", "cluster_questions", "split_questions"])
def test_commands_have_help(command, capsys):
    with pytest.raises(SystemExit):
        call_command(command, "--help")
    assert len(capsys.readouterr().out) > 200
