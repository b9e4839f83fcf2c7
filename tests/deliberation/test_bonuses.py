"""Bonuses: the pure computation, ``manage.py bonus_csv`` (Prolific's bulk-bonus format) and the admin action."""
from __future__ import annotations

import io
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from core.bonuses import BonusFacts, BonusRuleError, BonusRules, bonus_amount, bonus_lines
from deliberation.models import Group
from deliberation.services import opinion_submit
from participants.models import Participant

from ..factories import make_group, make_study

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
LINE = re.compile(r"^[^,\s]+,\d+\.\d{2}$")


def facts(pid="P1", *, completed=True, waited=timedelta(minutes=3), phases=4):
    return BonusFacts(recruitment_id=pid, completed=completed, lobby_entered_at=T0, lobby_left_at=T0 + waited,
                      phases_completed=phases)


def test_amounts_add_the_three_rules_and_round_to_cents():
    rules = BonusRules(per_completion=Decimal("1.50"), per_lobby_minute=Decimal("0.10"), per_phase=Decimal("0.25"))
    assert bonus_amount(rules, facts()) == Decimal("2.80")  # 1.50 + 3 × 0.10 + 4 × 0.25
    assert bonus_amount(rules, facts(completed=False, waited=timedelta(seconds=90), phases=1)) == Decimal("0.40")
    assert bonus_amount(rules, facts(waited=timedelta(seconds=-5), phases=0)) == Decimal("1.50")  # clock skew: 0


def test_lines_skip_and_count_participants_without_a_prolific_id():
    rules = BonusRules(per_completion=Decimal("1"))
    result = bonus_lines(rules, [facts("A"), facts(None), facts("  "), facts("B", completed=False, phases=0,
                                                                               waited=timedelta(0))])
    assert result.lines == [("A", Decimal("1.00"))] and result.skipped_without_id == 2
    assert result.csv_text() == "A,1.00\n" and result.total == Decimal("1.00")


@pytest.mark.parametrize("bad", [Decimal("-0.01"), Decimal("NaN"), 1.5])
def test_a_negative_or_non_decimal_rule_is_refused(bad):
    with pytest.raises(BonusRuleError):
        BonusRules(per_phase=bad)


@pytest.fixture
def bonus_study(transactional_db):
    study = make_study(slug="bonus", bonus_per_completion=Decimal("2.00"), bonus_per_lobby_minute=Decimal("0.05"),
                       bonus_per_phase=Decimal("0.20"))
    group, members = make_group(study, n=3)
    opinion_submit(participant=members[0], text="Food taxes hit poor families hardest, so remove them.")
    opinion_submit(participant=members[1], text="We need the revenue for schools and other services.")
    formed = Group.objects.get(pk=group.pk).created_at
    Participant.objects.filter(pk=members[0].pk).update(status="completed", lobby_entered_at=formed
                                                        - timedelta(minutes=4))
    Participant.objects.filter(pk=members[1].pk).update(recruitment_id=None, status="completed")
    Participant.objects.filter(pk=members[2].pk).update(status="dropped", lobby_entered_at=formed)
    timed_out = Participant.objects.create(study=study, recruitment_id="WAITED", status="lobby_timeout",
                                           lobby_entered_at=formed, finished_at=formed + timedelta(minutes=10))
    Participant.objects.create(study=study, recruitment_id="BOT", status="completed", is_simulated=True)
    Participant.objects.create(study=study, recruitment_id="NOCONSENT", status="joined")
    return study, members, timed_out


def test_bonus_csv_writes_prolifics_format_and_counts_the_skipped(bonus_study, tmp_path):
    study, members, timed_out = bonus_study
    out, err = io.StringIO(), io.StringIO()
    call_command("bonus_csv", "--study", "bonus", stdout=out, stderr=err)
    lines = out.getvalue().splitlines()
    assert all(LINE.match(line) for line in lines)  # no header, PROLIFIC_PID,amount with two decimals
    rows = dict(line.split(",") for line in lines)
    first = Participant.objects.get(pk=members[0].pk).recruitment_id
    # completed 2.00 + 4 lobby minutes × 0.05 + one phase (the opinion) × 0.20
    assert rows == {first: "2.40", "WAITED": "0.50"}  # the dropped member earned nothing: not listed
    assert "1 skipped without a Prolific id" in err.getvalue() and "total 2.90" in err.getvalue()
    target = tmp_path / "bonus.csv"
    call_command("bonus_csv", "--study", "bonus", "--out", str(target), stdout=io.StringIO(), stderr=io.StringIO())
    assert target.read_text() == out.getvalue()


def test_bonus_csv_bad_options_give_clear_errors(bonus_study, tmp_path):
    with pytest.raises(CommandError, match="No study with slug 'nope'"):
        call_command("bonus_csv", "--study", "nope", stdout=io.StringIO(), stderr=io.StringIO())
    with pytest.raises(CommandError, match="is a directory"):
        call_command("bonus_csv", "--study", "bonus", "--out", str(tmp_path), stdout=io.StringIO(),
                     stderr=io.StringIO())
    with pytest.raises(CommandError, match="Cannot write"):
        call_command("bonus_csv", "--study", "bonus", "--out", str(tmp_path / "missing" / "b.csv"),
                     stdout=io.StringIO(), stderr=io.StringIO())
    from deliberation.management.commands.bonus_csv import Command

    help_text = Command().create_parser("manage.py", "bonus_csv").format_help()
    assert "--study" in help_text and "--out" in help_text and "PROLIFIC_PID,amount" in help_text


def test_admin_action_downloads_the_same_file(bonus_study, admin_client):
    study, _, _ = bonus_study
    expected = io.StringIO()
    call_command("bonus_csv", "--study", "bonus", stdout=expected, stderr=io.StringIO())
    response = admin_client.post("/admin/deliberation/study/", {"action": "download_bonus_file",
                                                                "_selected_action": [study.pk]})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert 'filename="bonus-bonus.csv"' in response["Content-Disposition"]
    assert response.content.decode() == expected.getvalue()
    assert response["X-Bonus-Skipped-Without-Prolific-Id"] == "1"
    other = make_study(slug="second")
    response = admin_client.post("/admin/deliberation/study/", {"action": "download_bonus_file",
                                                                "_selected_action": [study.pk, other.pk]},
                                 follow=True)
    assert "Select exactly one study" in response.content.decode()
