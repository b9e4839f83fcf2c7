"""Experimenter tools: question import (command and admin), monitor, advancing a stuck group, CSV export."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from deliberation.models import Group, Question, Study

from ..factories import make_group, make_study

pytestmark = pytest.mark.django_db(transaction=True)
HABERMAS = Path(__file__).resolve().parents[3] / "shared" / "data" / "habermas" / "230118_chinchilla_questions.json"


def test_import_questions_command_on_the_real_habermas_file_is_idempotent():
    assert HABERMAS.exists(), "the shared data folder is expected beside the project"
    study = make_study(slug="h")
    out = io.StringIO()
    call_command("import_questions", str(HABERMAS), "--study", "h", stdout=out, verbosity=0)
    total = len(json.loads(HABERMAS.read_text()))
    assert Question.objects.count() >= total  # plus the factory's own question
    q = Question.objects.get(external_id="S173963710")
    assert q.affirming_statement.startswith("Artificial intelligence will make") and q.split == "train"
    assert q.topic == 0
    assert study.questions.count() >= total
    call_command("import_questions", str(HABERMAS), stdout=io.StringIO(), verbosity=0)
    assert Question.objects.filter(external_id="S173963710").count() == 1
    assert "updated" in out.getvalue()


def test_import_questions_split_limit_and_csv(tmp_path):
    call_command("import_questions", str(HABERMAS), "--split", "ood_test", "--limit", "5", stdout=io.StringIO(),
                 verbosity=0)
    assert set(Question.objects.values_list("split", flat=True)) == {"ood_test"}
    assert Question.objects.count() == 5
    path = tmp_path / "q.csv"
    path.write_text("question,affirming_statement,negating_statement,topic,split\n"
                    "Should X?,X is good.,X is NOT good.,3,train\n,,,,\n")
    call_command("import_questions", str(path), stdout=io.StringIO(), verbosity=0)
    assert Question.objects.get(text="Should X?").topic == 3


def test_import_questions_bad_files_give_clear_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CommandError, match="not valid JSON"):
        call_command("import_questions", str(bad), stdout=io.StringIO())
    with pytest.raises(CommandError, match="No such file"):
        call_command("import_questions", str(tmp_path / "missing.json"))
    other = tmp_path / "q.txt"
    other.write_text("hello")
    with pytest.raises(CommandError, match=".json or .csv"):
        call_command("import_questions", str(other), stdout=io.StringIO())


def test_admin_upload_imports_questions(admin_client, tmp_path):
    make_study(slug="adm")
    study = Study.objects.get(slug="adm")
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("qs.json", json.dumps([{"question": "Should we plant more trees?"}]).encode())
    response = admin_client.post("/admin/deliberation/question/import/", {"file": upload, "study": study.pk})
    assert response.status_code == 302
    assert study.questions.filter(text="Should we plant more trees?").exists()


def test_monitor_requires_staff_and_shows_groups(client, admin_client):
    group, members = make_group(n=3)
    url = f"/monitor/study/{group.study_id}/state.json"
    assert client.get(url).status_code == 302  # to the login page
    state = admin_client.get(url).json()
    assert state["groups"][0]["phase"] == "opinion"
    assert [m["connected"] for m in state["groups"][0]["members"]] == [True, True, True]
    page = admin_client.get(f"/monitor/study/{group.study_id}/")
    assert b"/s/demo/" in page.content


def test_advance_button_unsticks_a_group(admin_client, client):
    group, members = make_group(n=3)
    assert client.post(f"/monitor/group/{group.pk}/advance/").status_code == 302
    assert Group.objects.get(pk=group.pk).phase == "opinion"  # anonymous: nothing happened
    admin_client.post(f"/monitor/group/{group.pk}/advance/")
    group.refresh_from_db()
    assert group.phase == "done" and group.outcome == "no_opinions"
    assert group.events.filter(kind="forced_by_experimenter").exists()


def test_csv_export_action_writes_every_field_without_tokens(admin_client):
    group, members = make_group(n=3)
    response = admin_client.post("/admin/participants/participant/", {
        "action": "export_csv", "_selected_action": [m.pk for m in members]})
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 3 and "token" not in rows[0]
    assert {r["status"] for r in rows} == {"in_group"} and rows[0]["group_id"] == str(group.pk)


def test_study_validation_rejects_min_above_max():
    from django.core.exceptions import ValidationError

    study = Study(slug="x", title="x", min_group_size=5, max_group_size=3)
    with pytest.raises(ValidationError):
        study.full_clean()


def test_export_csv_command_writes_one_file_per_entity(tmp_path):
    from deliberation.services import opinion_submit

    group, members = make_group(n=3)
    opinion_submit(participant=members[0], text="Taxes on food should go, I think.")
    call_command("export_csv", "--study", group.study.slug, "--out", str(tmp_path), stdout=io.StringIO(),
                 verbosity=0)
    assert {p.name for p in tmp_path.iterdir()} == {f"{n}.csv" for n in (
        "arms", "participants", "groups", "opinions", "candidates", "ratings", "critiques", "events",
        "screening_answers", "questionnaire_items", "questionnaire_answers", "participant_events")}
    opinions = list(csv.DictReader((tmp_path / "opinions.csv").open()))
    assert opinions[0]["text"] == "Taxes on food should go, I think." and opinions[0]["submitted_at"]
    assert "token" not in (tmp_path / "participants.csv").read_text().splitlines()[0]
    with pytest.raises(CommandError):
        call_command("export_csv", "--study", "missing", "--out", str(tmp_path))
