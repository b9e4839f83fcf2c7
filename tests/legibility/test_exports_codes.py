"""Legibility judges' completion codes per outcome and ``export_legibility`` (issue 18 item 10)."""
from __future__ import annotations

import csv
import io

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from legibility.judging import judge_outcome
from legibility.models import JudgeItem, JudgeSession

from .factories import judge, make_study
from .test_judging import _page, _play, clock  # noqa: F401 (clock is a fixture)

pytestmark = pytest.mark.django_db
CODES = dict(completion_code_completed="LEGDONE", completion_code_excluded="LEGCHANCE",
             completion_code_timed_out="LEGSLOW")


def test_outcome_rule():
    assert judge_outcome(n_items=20, n_timed_out=11, flagged=False, max_timeout_share=0.5) == "timed_out"
    assert judge_outcome(n_items=20, n_timed_out=10, flagged=True, max_timeout_share=0.5) == "excluded"
    assert judge_outcome(n_items=20, n_timed_out=10, flagged=False, max_timeout_share=0.5) == "completed"
    assert judge_outcome(n_items=0, n_timed_out=0, flagged=True, max_timeout_share=0.5) == "excluded"


def test_each_outcome_gets_its_own_code_and_page(clock):  # noqa: F811
    study = make_study(n_problems=24, items_per_session=20, gold_share=0.2, **CODES)
    careful, careful_page = _play(study, "careful", lambda item: item.solution.correct)
    lazy, lazy_page = _play(study, "lazy", lambda item: True)  # always "correct": 50 %, at chance
    slow = judge(study, "slow")
    browser = Client()
    for _ in range(20):  # sees each item and lets it time out
        page = _page(browser, slow)
        if page.status_code == 302:
            break
        clock.advance(study.seconds_per_item + 1)
    done = _page(browser, slow)
    assert done.status_code == 302
    rows = {s.recruitment_id: (s.outcome, s.completion_code) for s in JudgeSession.objects.all()}
    assert rows == {"careful": ("completed", "LEGDONE"), "lazy": ("excluded", "LEGCHANCE"),
                    "slow": ("timed_out", "LEGSLOW")}
    assert b"LEGDONE" in careful_page.content and b"LEGCHANCE" in lazy_page.content
    assert JudgeItem.objects.filter(session__recruitment_id="slow", timed_out=True).count() == 20


def test_an_empty_outcome_code_falls_back_to_the_completed_code(clock):  # noqa: F811
    study = make_study(n_problems=24, items_per_session=20, gold_share=0.2)
    lazy, _ = _play(study, "lazy", lambda item: True)
    lazy.refresh_from_db()
    assert lazy.outcome == "excluded" and lazy.completion_code == "LEGDONE"


def read(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_export_legibility_writes_judges_judgments_items_and_problems(clock, tmp_path):  # noqa: F811
    study = make_study(n_problems=24, items_per_session=20, gold_share=0.2, **CODES)
    _play(study, "careful", lambda item: item.solution.correct)
    _play(study, "=cmd|' /C calc'!A0", lambda item: True)  # a recruitment id a spreadsheet would run
    out = io.StringIO()
    call_command("export_legibility", "--study", study.slug, "--out", str(tmp_path / "x"), stdout=out,
                 stderr=io.StringIO())
    judges, judgments = read(tmp_path / "x" / "judges.csv"), read(tmp_path / "x" / "judgments.csv")
    items, problems = read(tmp_path / "x" / "items.csv"), read(tmp_path / "x" / "problems.csv")
    assert len(judges) == 2 and len(judgments) == 40
    assert {j["outcome"] for j in judges} == {"completed", "excluded"}
    assert "token" not in judges[0] and "recruitment_id" not in judges[0]
    assert len(items) == JudgeItem.objects.values("solution_id").distinct().count()
    assert {r["id"] for r in problems} == {i["problem_id"] for i in items}
    assert "judgments.csv: 40 rows" in out.getvalue()
    call_command("export_legibility", "--study", study.slug, "--out", str(tmp_path / "y"),
                 "--include-recruitment-ids", stdout=io.StringIO(), stderr=io.StringIO())
    ids = sorted(j["recruitment_id"] for j in read(tmp_path / "y" / "judges.csv"))
    assert ids == ["'=cmd|' /C calc'!A0", "careful"]  # quoted, never a formula


def test_export_legibility_refuses_bad_options_clearly(tmp_path):
    make_study(slug="known")
    with pytest.raises(CommandError, match="no legibility study 'nope' \\(known: known\\)"):
        call_command("export_legibility", "--study", "nope", "--out", str(tmp_path))
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(CommandError, match="is a file"):
        call_command("export_legibility", "--study", "known", "--out", str(a_file))
    with pytest.raises(CommandError):
        call_command("export_legibility", "--out", str(tmp_path))  # --study is required


def test_export_legibility_has_help():
    from django.core.management import load_command_class

    command = load_command_class("legibility", "export_legibility")
    text = command.create_parser("manage.py", "export_legibility").format_help()
    assert "--include-recruitment-ids" in text and "judgments.csv" in text and "--study" in text
