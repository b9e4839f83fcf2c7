"""Evidence stays evidence (issue 15, item 8): PostgreSQL refuses to change or delete group events, nothing
cascades into the log, and the admin can neither delete members' answers nor edit legibility ground truth."""
from __future__ import annotations

import pytest
from django.contrib import admin
from django.db import IntegrityError, connection, transaction
from django.db.models import ProtectedError
from django.test import RequestFactory

from deliberation.models import Critique, Draft, Group, GroupEvent, Opinion, Rating
from deliberation.services import draft_save, log_event, opinion_submit
from legibility.models import Problem, Solution
from participants.models import Participant

from ..factories import make_group
from ..legibility.factories import make_study as make_legibility_study

pytestmark = pytest.mark.django_db

OPINION = "Food taxes hit poor families hardest, so removing them is fair and simple."


def refused(statement):
    """Run ``statement`` in a savepoint; True if the database refused it as a restrict violation."""
    try:
        with transaction.atomic():
            statement()
    except IntegrityError as exc:
        assert "append-only" in str(exc)
        return True
    return False


def test_postgresql_refuses_updating_or_deleting_group_events_but_not_adding_or_truncating():
    group, members = make_group(n=3)
    opinion_submit(participant=members[0], text=OPINION)
    events = GroupEvent.objects.filter(group=group)
    before = list(events.values_list("pk", "kind", "participant_id", "payload"))
    assert before

    def raw(sql, *params):
        with connection.cursor() as cursor:
            cursor.execute(sql, params or None)

    assert refused(lambda: events.update(kind="edited"))
    assert refused(lambda: events.update(participant=None))
    assert refused(lambda: events.delete())  # a queryset delete bypasses the model's delete()
    assert refused(lambda: raw("UPDATE deliberation_groupevent SET payload = '{}' WHERE group_id = %s", group.pk))
    assert refused(lambda: raw("DELETE FROM deliberation_groupevent WHERE group_id = %s", group.pk))
    assert list(events.values_list("pk", "kind", "participant_id", "payload")) == before
    log_event(group, "still_appendable", None)
    assert events.filter(kind="still_appendable").exists()
    with transaction.atomic():  # the test database is flushed with TRUNCATE: that must keep working
        sid = transaction.savepoint()
        raw("SET CONSTRAINTS ALL IMMEDIATE")  # this test's own inserts leave deferred FK checks pending
        raw("TRUNCATE deliberation_groupevent")
        assert not GroupEvent.objects.exists()
        transaction.savepoint_rollback(sid)


def test_deleting_a_participant_or_group_with_events_is_refused_not_cascaded_into_the_log():
    group, members = make_group(n=3)
    opinion_submit(participant=members[0], text=OPINION)
    count = GroupEvent.objects.count()
    with pytest.raises(ProtectedError):
        members[0].delete()  # would otherwise SET NULL its events (and cascade its opinion)
    assert Opinion.objects.filter(participant=members[0]).exists()
    Participant.objects.filter(group=group).update(group=None)
    with pytest.raises(ProtectedError):
        Group.objects.get(pk=group.pk).delete()
    assert GroupEvent.objects.count() == count


def test_the_admin_deletes_no_answers_and_no_event_even_for_a_superuser(admin_client, admin_user):
    group, members = make_group(n=3)
    opinion_submit(participant=members[0], text=OPINION)
    opinion = Opinion.objects.get(participant=members[0])
    draft_save(participant=members[1], phase="opinion", payload={"text": "half"})
    request = RequestFactory().get("/admin/")
    request.user = admin_user
    for model in (Opinion, Rating, Critique, Draft, GroupEvent, Group, Participant):
        model_admin = admin.site._registry[model]
        assert not model_admin.has_delete_permission(request), model
        assert "delete_selected" not in model_admin.get_actions(request), model
    for model, row in ((Opinion, opinion), (Draft, Draft.objects.get()), (Group, group)):
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/{row.pk}/delete/"
        assert admin_client.post(url, {"post": "yes"}).status_code == 403, model
    admin_client.post("/admin/deliberation/opinion/", {"action": "delete_selected", "post": "yes",
                                                       "_selected_action": [opinion.pk]})
    assert Opinion.objects.filter(pk=opinion.pk).exists() and Draft.objects.exists()


def test_the_admin_cannot_edit_legibility_ground_truth(admin_client):
    make_legibility_study(n_problems=1)
    solution = Solution.objects.filter(correct=True, is_gold=True).get()
    problem = solution.problem
    page = admin_client.get(f"/admin/legibility/solution/{solution.pk}/change/").content.decode()
    for field in ("correct", "is_gold", "final_answer", "text"):
        assert f'name="{field}"' not in page, field
    admin_client.post(f"/admin/legibility/solution/{solution.pk}/change/", {
        "problem": problem.pk, "text": "rewritten", "source": "prover", "role": "sneaky", "round": 3, "correct": "",
        "is_gold": "", "final_answer": "0", "provenance": "{}", "verifier_scores": "{}"})
    admin_client.post(f"/admin/legibility/problem/{problem.pk}/change/", {
        "study": problem.study_id, "split": "train", "index": 0, "half": "prover", "text": "other",
        "reference_answer": "0", "numeric_answer": 0})
    solution.refresh_from_db()
    problem.refresh_from_db()
    assert (solution.correct, solution.is_gold, solution.round, solution.text.startswith("She has")) == \
        (True, True, 0, True)
    assert (problem.half, problem.split, problem.reference_answer) == ("heldout", "test", "5")
    assert admin_client.post(f"/admin/legibility/solution/{solution.pk}/delete/", {"post": "yes"}).status_code == 403
    assert admin_client.post(f"/admin/legibility/problem/{problem.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Problem.objects.filter(pk=problem.pk).exists()
