"""Issue 15 item 4 (and the judges' join rate limit of item 9): a Prolific id alone resumes nobody.

A session is resumed with the browser's cookie, or with the same PROLIFIC_PID *and* SESSION_ID it started with;
anything else gets a clear page, never a second row and never the other person's session. The experimenter re-links
a genuine change of device in the admin (a permission of its own; logged). The same holds for legibility judges."""
from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.test import Client

from legibility.models import JudgeSession
from participants.models import Participant

from ..factories import make_study
from ..joining import consent_hash, join_and_consent
from ..legibility.factories import make_study as make_legibility_study

pytestmark = pytest.mark.django_db

LINKS = {"participant": "/s/{slug}/", "judge": "/legibility/s/{slug}/"}


def _study(kind: str):
    return make_study(slug="s1") if kind == "participant" else make_legibility_study(slug="s1")


def _rows(kind: str):
    return Participant.objects if kind == "participant" else JudgeSession.objects


@pytest.mark.parametrize("kind", ["participant", "judge"])
def test_a_prolific_id_alone_or_with_another_session_gets_a_clear_page_not_the_session(kind):
    """Before: /s/SLUG/?PROLIFIC_PID=<someone's id> opened that person's session in any browser."""
    _study(kind)
    link = LINKS[kind].format(slug="s1")
    owner = Client()
    own_page = join_and_consent(owner, link + "?PROLIFIC_PID=p1&STUDY_ID=st&SESSION_ID=sess-1")["Location"]
    token = _rows(kind).get().token
    for query in ("?PROLIFIC_PID=p1", "?PROLIFIC_PID=p1&SESSION_ID=other", "?PROLIFIC_PID=p1&SESSION_ID="):
        stranger = Client()
        page = stranger.get(link + query)
        assert page.status_code == 409, query
        assert b"already started this study in another browser" in page.content
        assert token.encode() not in page.content and "Location" not in page
        posted = stranger.post(link + query, {"consent": "yes", "consent_sha256": "0" * 64})
        assert posted.status_code == 409 and token.encode() not in posted.content
        assert not [name for name in stranger.cookies if name.startswith(("dlb_p_", "leg_j_"))]
    assert _rows(kind).count() == 1
    # the owner is not disturbed: cookie, or the same id and session from another browser
    assert owner.get(link)["Location"] == own_page
    assert Client().get(link + "?PROLIFIC_PID=p1&SESSION_ID=sess-1")["Location"] == own_page


@pytest.mark.parametrize("kind", ["participant", "judge"])
def test_a_browser_cookie_does_not_resume_a_session_for_another_prolific_id(kind):
    """A shared computer: the cookie of one person's session and a link with another person's id."""
    _study(kind)
    link = LINKS[kind].format(slug="s1")
    browser = Client()
    first = join_and_consent(browser, link + "?PROLIFIC_PID=p1&SESSION_ID=a")["Location"]
    page = browser.get(link + "?PROLIFIC_PID=p2&SESSION_ID=b")
    assert page.status_code == 200 and b"consent-box" in page.content  # a newcomer's consent page
    second = browser.post(link + "?PROLIFIC_PID=p2&SESSION_ID=b",
                          {"consent": "yes", "consent_sha256": consent_hash(page)})["Location"]
    assert second != first and _rows(kind).count() == 2
    assert _rows(kind).get(recruitment_id="p2").token in second


def _admin(*codenames: str) -> Client:
    user = User.objects.create_user(f"staff-{len(codenames)}", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("kind", ["participant", "judge"])
def test_the_experimenter_relinks_a_genuine_change_of_device_with_the_permission_and_it_is_logged(kind):
    _study(kind)
    link = LINKS[kind].format(slug="s1")
    old_device = Client()
    old_page = join_and_consent(old_device, link + "?PROLIFIC_PID=p1&SESSION_ID=a")["Location"]
    row = _rows(kind).get()
    model = "participant" if kind == "participant" else "judgesession"
    changelist = f"/admin/{row._meta.app_label}/{model}/"
    action = {"action": "relink", "_selected_action": [row.pk]}

    viewer = _admin(f"view_{model}")  # may look, may not re-link
    assert b'value="relink"' not in viewer.get(changelist).content
    viewer.post(changelist, {**action, "confirm": "yes"})
    assert _rows(kind).get().token == row.token

    admin = _admin(f"view_{model}", f"relink_{model}")
    assert b'value="relink"' in admin.get(changelist).content
    confirm = admin.post(changelist, action)
    assert confirm.status_code == 200 and b"Yes, issue new links" in confirm.content
    assert _rows(kind).get().token == row.token  # nothing happens before the confirmation
    done = admin.post(changelist, {**action, "confirm": "yes"})
    new_token = _rows(kind).get().token
    assert new_token != row.token and new_token.encode() in done.content

    assert Client().get(old_page).status_code == 404  # the old page link and cookie no longer open the session
    again = old_device.get(link)
    assert again.status_code == 200 and b"consent-box" in again.content  # a newcomer's page: the cookie names nobody
    new_device = Client()
    new_page = old_page.replace(row.token, new_token)
    assert new_device.get(new_page).status_code == 200
    entry = LogEntry.objects.get(object_id=str(row.pk))
    assert "Re-linked to a new device" in entry.get_change_message() and entry.user.username == "staff-2"


def test_judges_joins_over_the_limit_get_a_clear_429_and_returning_judges_resume(settings):
    """Before: the judges' join had no rate limit at all."""
    settings.JOIN_RATE_LIMIT = 2
    settings.JOIN_RATE_WINDOW_SECONDS = 60
    make_legibility_study(slug="s1")
    make_study(slug="s1")
    link = "/legibility/s/s1/"
    first = Client(REMOTE_ADDR="203.0.113.9")
    resumed = join_and_consent(first, link + "?PROLIFIC_PID=j0&SESSION_ID=s")["Location"]
    assert join_and_consent(Client(REMOTE_ADDR="203.0.113.9"), link + "?PROLIFIC_PID=j1&SESSION_ID=s").status_code \
        == 302
    blocked = join_and_consent(Client(REMOTE_ADDR="203.0.113.9"), link + "?PROLIFIC_PID=j2&SESSION_ID=s")
    assert blocked.status_code == 429 and blocked["Retry-After"] == "60"
    assert b"Please wait a minute" in blocked.content
    assert not JudgeSession.objects.filter(recruitment_id="j2").exists()
    assert Client(REMOTE_ADDR="203.0.113.9").get(link + "?PROLIFIC_PID=j0&SESSION_ID=s")["Location"] == resumed
    assert first.get(link)["Location"] == resumed
    # the judges' count is its own: a deliberation participant from the same address still gets in
    assert join_and_consent(Client(REMOTE_ADDR="203.0.113.9"), "/s/s1/?PROLIFIC_PID=p&SESSION_ID=s").status_code \
        == 302
