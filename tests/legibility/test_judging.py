"""Judge sessions: balanced queues, the server-side timer, access, CSRF, idempotence, the chance flag."""
from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from legibility import services
from legibility.judging import Candidate, build_queue, judge_flagged
from legibility.models import JudgeItem, JudgeSession

from ..joining import consent_hash, join_and_consent
from .factories import judge, make_study

pytestmark = pytest.mark.django_db


class FakeClock:
    def __init__(self):
        self.now = timezone.now()

    def __call__(self):
        return self.now

    def advance(self, seconds: float):
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(services, "clock", fake)
    return fake


def _page(client, session):
    return client.get(reverse("legibility:judge", kwargs={"token": session.token}))


def _remaining_ms(response) -> int:
    return int(re.search(r'data-remaining-ms="(\d+)"', response.content.decode()).group(1))


def _item_id(response) -> int:
    return int(re.search(r'name="item" value="(\d+)"', response.content.decode()).group(1))


def _answer(client, session, item_id, value="true"):
    return client.post(reverse("legibility:answer", kwargs={"token": session.token}),
                       {"item": item_id, "answer": value})


def test_pure_queue_is_balanced_mixed_and_uses_each_problem_once():
    strata = [("shipped", "", 0), ("prover", "helpful", 1), ("prover", "sneaky", 1), ("prover", "helpful", 2)]
    candidates = [Candidate(solution_id=p * 2 + k, problem_id=p, correct=k == 0, stratum=strata[p % 4],
                            is_gold=p % 4 == 0) for p in range(40) for k in (0, 1)]
    by_id = {c.solution_id: c for c in candidates}
    for seed in range(5):
        queue = build_queue(candidates, n_items=12, gold_share=0.25, seed=seed)
        chosen = [by_id[q.solution_id] for q in queue]
        assert len(queue) == 12 and sum(q.is_gold for q in queue) == 3
        regular = [c for c, q in zip(chosen, queue) if not q.is_gold]
        assert sum(c.correct for c in regular) in (4, 5) and len(regular) == 9  # odd count: coin for the extra
        assert len({c.problem_id for c in chosen}) == 12
        assert len({c.stratum for c in regular}) >= 3  # every prover and round represented
        assert all(by_id[q.solution_id].is_gold for q in queue if q.is_gold)
    assert build_queue(candidates, n_items=12, gold_share=0.25, seed=1) == \
        build_queue(candidates, n_items=12, gold_share=0.25, seed=1)
    with pytest.raises(ValueError, match="not enough"):
        build_queue(candidates[:6], n_items=12, gold_share=0, seed=0)


def test_consent_builds_a_balanced_queue_once():
    study = make_study(items_per_session=8, gold_share=0.25)
    session = judge(study)
    items = list(session.items.select_related("solution__problem"))
    assert len(items) == 8
    assert sum(i.solution.correct for i in items) == 4
    assert sum(i.is_gold for i in items) == 2 and all(i.solution.is_gold for i in items if i.is_gold)
    assert len({i.solution.problem_id for i in items}) == 8
    assert len({i.solution.round for i in items}) >= 2
    services.session_consent(session=session)  # a second consent changes nothing
    assert session.items.count() == 8


def test_the_consent_post_creates_the_judge_who_resumes_with_id_and_session_and_inactive_studies_refuse():
    study = make_study()
    client = Client()
    link = reverse("legibility:join", kwargs={"slug": study.slug}) + "?PROLIFIC_PID=abc&STUDY_ID=S1&SESSION_ID=X1"
    page = client.get(link)
    assert page.status_code == 200 and b"consent-box" in page.content and b"How it works" in page.content
    assert not JudgeSession.objects.exists()  # opening the link stores nothing
    response = client.post(link, {"consent": "yes", "consent_sha256": consent_hash(page)})
    assert response.status_code == 302
    session = JudgeSession.objects.get(recruitment_id="abc")
    assert session.recruitment_study_id == "S1" and response.url.endswith(f"/j/{session.token}/")
    assert session.status == "judging" and session.items.count() == study.items_per_session
    assert session.consent_version == 1 and len(session.consent_sha256) == 64
    again = Client().get(link)  # another browser, the same PROLIFIC_PID and SESSION_ID
    assert again.url == response.url and JudgeSession.objects.count() == 1
    assert b"answer-form" in client.get(response.url).content
    study.is_active = False
    study.save()
    assert Client().get(reverse("legibility:join", kwargs={"slug": study.slug})).status_code == 409


def test_server_timer_resumes_on_reload_and_late_answer_is_a_timeout(clock):
    study = make_study(seconds_per_item=45, items_per_session=4, gold_share=0)
    session = judge(study)
    client = Client()
    first = _page(client, session)
    assert first.status_code == 200 and _remaining_ms(first) == 45_000
    item_id = _item_id(first)
    item = JudgeItem.objects.get(pk=item_id)
    assert item.started_at == clock.now and item.deadline == clock.now + timedelta(seconds=45)

    clock.advance(20)  # reload 20 s later: the same item with 25 s left, not a fresh timer
    reloaded = _page(client, session)
    assert _item_id(reloaded) == item_id and _remaining_ms(reloaded) == 25_000
    assert reloaded["Cache-Control"] == "no-store"

    clock.advance(26)  # one second past the deadline: the answer arrives late
    assert _answer(client, session, item_id, "true").status_code == 302
    item.refresh_from_db()
    assert item.timed_out and item.answer is None and item.answered_at is None

    # The next item gets its own timer from when it is first shown.
    second = _page(client, session)
    second_id = _item_id(second)
    assert second_id != item_id and _remaining_ms(second) == 45_000
    clock.advance(3.5)
    assert _answer(client, session, second_id, "false").status_code == 302
    second_item = JudgeItem.objects.get(pk=second_id)
    assert second_item.answer is False and second_item.response_ms == 3500 and not second_item.timed_out

    # Closing the tab and coming back after the deadline: that item counts as timed out, not restarted.
    third_id = _item_id(_page(client, session))
    clock.advance(600)
    fourth = _page(client, session)
    assert JudgeItem.objects.get(pk=third_id).timed_out
    assert _item_id(fourth) != third_id and _remaining_ms(fourth) == 45_000


def test_duplicate_answers_are_idempotent_and_unshown_items_refused(clock):
    study = make_study(items_per_session=4, gold_share=0)
    session = judge(study)
    client = Client()
    item_id = _item_id(_page(client, session))
    clock.advance(5)
    _answer(client, session, item_id, "true")
    clock.advance(1)
    _answer(client, session, item_id, "false")  # double submit / back button: the first answer stands
    item = JudgeItem.objects.get(pk=item_id)
    assert item.answer is True and item.response_ms == 5000
    unshown = session.items.filter(started_at__isnull=True).order_by("-position").first()
    assert _answer(client, session, unshown.pk, "true").status_code == 409
    assert _answer(client, session, item_id, "maybe").status_code == 400
    assert client.post(reverse("legibility:answer", kwargs={"token": session.token}),
                       {"item": "x", "answer": "true"}).status_code == 400


def test_a_judge_cannot_answer_another_judges_item(clock):
    study = make_study(items_per_session=4, gold_share=0)
    alice, bob = judge(study, "alice"), judge(study, "bob")
    alice_item = _item_id(_page(Client(), alice))
    _page(Client(), bob)
    response = _answer(Client(), bob, alice_item, "true")
    assert response.status_code == 404
    assert JudgeItem.objects.get(pk=alice_item).answer is None


def test_csrf_is_enforced_on_answers_and_consent():
    study = make_study(items_per_session=4, gold_share=0)
    session = judge(study)
    client = Client(enforce_csrf_checks=True)
    page = _page(client, session)
    item_id = _item_id(page)
    url = reverse("legibility:answer", kwargs={"token": session.token})
    assert client.post(url, {"item": item_id, "answer": "true"}).status_code == 403
    assert JudgeItem.objects.get(pk=item_id).answer is None
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    assert client.post(url, {"item": item_id, "answer": "true", "csrfmiddlewaretoken": token}).status_code == 302
    assert JudgeItem.objects.get(pk=item_id).answer is True
    newcomer = judge(study, "new", consent=False)
    consent_url = reverse("legibility:judge", kwargs={"token": newcomer.token})
    assert Client(enforce_csrf_checks=True).post(consent_url, {"consent": "yes"}).status_code == 403
    newcomer.refresh_from_db()
    assert newcomer.status == "joined"


def _play(study, pid, choose):
    """A scripted judge: answers every item with choose(item) through the pages, then finishes."""
    session = judge(study, pid)
    client = Client()
    while True:
        page = _page(client, session)
        if page.status_code == 302:
            return session, client.get(page.url)
        item = JudgeItem.objects.select_related("solution").get(pk=_item_id(page))
        _answer(client, session, item.pk, "true" if choose(item) else "false")


def test_chance_level_judge_is_flagged_and_shown_in_admin(clock):
    study = make_study(n_problems=24, items_per_session=20, gold_share=0.2, prolific_redirect=True)
    lazy, done_page = _play(study, "lazy", lambda item: True)  # always "correct": 50 % by construction
    careful, _ = _play(study, "careful", lambda item: item.solution.correct)
    lazy_stats, careful_stats = services.session_stats(lazy), services.session_stats(careful)
    assert lazy_stats.n_answered == 20 and lazy_stats.accuracy == 0.5 and lazy_stats.flagged
    assert careful_stats.accuracy == 1.0 and careful_stats.gold_accuracy == 1.0 and not careful_stats.flagged

    # The end: completion code and the Prolific link.
    lazy.refresh_from_db()
    assert lazy.status == "completed" and lazy.completion_code == "LEGDONE"
    assert b"LEGDONE" in done_page.content
    assert b"https://app.prolific.com/submissions/complete?cc=LEGDONE" in done_page.content

    admin = User.objects.create_superuser("admin", "a@example.com", "pw")
    client = Client()
    client.force_login(admin)
    changelist = client.get(reverse("admin:legibility_judgesession_changelist")).content.decode()
    assert "0.50 (10/20)" in changelist and "1.00 (20/20)" in changelist
    assert changelist.count('alt="True"') == 1  # only the lazy judge is flagged
    detail = client.get(reverse("admin:legibility_judgesession_change", args=[lazy.pk]))
    assert detail.status_code == 200


def test_flag_rule_on_gold_items():
    # Overall well above chance, but half of four gold items wrong: flagged.
    assert judge_flagged(n_right=18, n_answered=20, gold_right=2, gold_answered=4, alpha=0.05)
    assert not judge_flagged(n_right=18, n_answered=20, gold_right=4, gold_answered=4, alpha=0.05)
    # Enough gold items for a test: 6/10 is not significant.
    assert judge_flagged(n_right=40, n_answered=50, gold_right=6, gold_answered=10, alpha=0.05)
    assert judge_flagged(n_right=0, n_answered=0, gold_right=0, gold_answered=0, alpha=0.05)


def test_report_page_and_standalone_file(clock, tmp_path):
    from legibility.models import Verifier
    from legibility.reports import judge_summary, judgement_frame, prover_frame

    study = make_study(n_problems=24, items_per_session=12, gold_share=0)
    _play(study, "lazy", lambda item: True)
    _play(study, "careful", lambda item: item.solution.correct)
    Verifier.objects.create(study=study, round=1, status="ready", path="x",
                            metrics={"heldout": {"auc": 0.71, "balanced_best_of_4": 0.66,
                                                 "attack_success_rate": 0.3},
                                     "mixture": [{"group": "0 base", "available": 96, "used": 75,
                                                  "max_repeats": 1, "counted": True},
                                                 {"group": "1 sneaky", "available": 25, "used": 75,
                                                  "max_repeats": 3, "counted": True}]})
    frame = judgement_frame(study)
    assert len(frame) == 24 and frame["flagged"].sum() == 12  # the lazy judge is excluded
    summary = judge_summary(frame, n_boot=50)
    assert (summary["accuracy"] == 1.0).all() and summary["n"].sum() == 12
    assert set(summary["role"]) <= {"base", "helpful", "sneaky"}
    provers = prover_frame(study)
    assert (provers["accuracy"] == 0.5).all()  # one correct and one incorrect solution per problem

    out = tmp_path / "report.html"
    printed = io.StringIO()
    call_command("legibility_report", "--study", study.slug, "--out", str(out), "--n-boot", "50", stdout=printed)
    page = out.read_text()
    text = printed.getvalue()  # the numbers behind the figures, per round
    assert "judges: 2 · excluded at chance: 1" in text
    assert "judges:\n" in text and "median_seconds" in text and "verifiers:\n" in text and "0.710" in text
    assert "provers:\n" in text
    assert "verifier mixture:\n" in text and "1 sneaky" in text  # what the verifier trained on
    assert "Verifier training mixture" in page
    for key in ("judge-accuracy", "judge-time", "verifier", "prover", "tax"):
        assert f'id="fig-legibility-{key}"' in page
    assert "judges: 2" in page and "excluded at chance: 1" in page and len(page) > 1_000_000  # plotly inlined

    url = reverse("legibility:report", kwargs={"slug": study.slug})
    assert Client().get(url).status_code == 302  # login required
    client = Client()
    client.force_login(User.objects.create_superuser("analyst", "b@example.com", "pw"))
    response = client.get(url)
    assert response.status_code == 200 and b'id="fig-legibility-tax"' in response.content


def test_mangled_tokens_are_a_404_or_a_new_judge_never_a_server_error():
    """A NUL byte (or any junk) in a judge link or the returning-judge cookie never reaches PostgreSQL."""
    study = make_study(items_per_session=4, gold_share=0)
    client = Client(raise_request_exception=False)
    for token in ("abc%00def", "x" * 300, "%F0%9F%92%A9", "short"):
        for name in ("judge", "answer", "complete"):
            response = client.get(f"/legibility/j/{token}/" + ("" if name == "judge" else f"{name}/"))
            assert response.status_code in (404, 405), (name, token, response.status_code)
    client.cookies[f"leg_j_{study.pk}"] = "bad\x00cookie"
    response = join_and_consent(client, reverse("legibility:join", kwargs={"slug": study.slug}))
    assert response.status_code == 302
    assert JudgeSession.objects.filter(study=study).count() == 1
