"""Analyst reports on a simulated study driven through the real services: the frames loaded from the
database, the page (who may see it, every figure, plotly.js from static files), and the `report` command."""
from __future__ import annotations

import re

import numpy as np
import pytest
from django.contrib.auth.models import Group as AuthGroup
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command, load_command_class
from django.urls import reverse

from analysis.reports.build import FIGURE_KEYS
from analysis.reports.data import load_group_texts, load_study
from analysis.representation import representation_frame
from deliberation.models import Group, Rating
from participants.models import Participant
from tests.analysis.simulated import build_simulated_study
from tests.factories import make_group

pytestmark = pytest.mark.django_db(transaction=False)


@pytest.fixture
def study():
    return build_simulated_study(slug="rep", groups=4, group_size=4, seed=3, leave_one_out_share=0.5)


def _url(study, **params) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return reverse("analysis:study_report", kwargs={"slug": study.slug}) + (f"?{query}" if query else "")


def test_load_study_reads_every_table_in_a_few_queries(study, django_assert_max_num_queries):
    with django_assert_max_num_queries(9):
        data = load_study(study)
    assert len(data.groups) == 4 and set(data.groups["phase"]) == {"done"}
    assert set(data.groups["condition"]) == {"standard", "leave_one_out"}
    assert len(data.members) == 16
    assert len(data.ratings) == Rating.objects.filter(group__study=study).count() > 0
    assert set(data.submissions["phase"]) == {"opinion", "rating", "critique", "final_rating"}
    assert len(data.submissions[data.submissions["phase"] == "opinion"]) == 16
    # Every group went opinion -> generating -> rating -> critique -> revising -> final_rating -> done.
    assert data.phase_times.groupby("group_id")["phase"].nunique().tolist() == [6] * 4
    assert (data.phase_times["seconds"] >= 0).all()
    texts = load_group_texts(study)
    assert len(texts) == 4 and all(len(t.opinions) == 4 and set(t.winners) == {1, 2} for t in texts)


def test_representation_of_the_simulated_study_with_real_embeddings(study):
    import torch

    torch.set_num_threads(1)
    frame = representation_frame(load_group_texts(study))
    assert len(frame) == 8 and sorted(set(frame["round"])) == [1, 2]  # 4 groups x 2 winners
    assert frame["minority_weight"].between(0, 1).all() and np.isfinite(frame["fit_error"]).all()
    # Groups of four: a minority found from the texts is one member (or none), never two.
    assert set(frame["minority_share"]) <= {0.0, 0.25}
    assert (frame["minority_members"] == (frame["minority_share"] * 4).round()).all()


def test_analyst_page_shows_every_figure_with_plotly_from_static(study, client):
    analyst = User.objects.create_user("ana", password="pw")
    analyst.groups.add(AuthGroup.objects.create(name="analyst"))
    client.force_login(analyst)
    response = client.get(_url(study, representation=1))
    assert response.status_code == 200
    page = response.content.decode()
    for key in FIGURE_KEYS:
        assert f'id="fig-{key}"' in page, key
    assert "Not computed" not in page and "Minority representation" in page
    scripts = re.findall(r'<script[^>]+src="([^"]+)"', page)
    assert scripts == ["/static/plotly/plotly.min.js"]
    static = client.get(scripts[0])
    assert static.status_code == 200
    assert b"plotly.js" in b"".join(static.streaming_content)[:2000]
    assert 'name="viewport"' in page  # the site's phone-friendly base template
    download = client.get(_url(study, format="html"))
    assert download.status_code == 200 and "attachment" in download["Content-Disposition"]
    assert not re.search(r"<script[^>]+src=", download.content.decode())


def test_only_staff_and_analysts_see_the_report(study, client):
    anonymous = client.get(_url(study))
    assert anonymous.status_code == 302 and anonymous["Location"].startswith(reverse("admin:login"))
    participant = Participant.objects.filter(study=study).first()
    client.get(reverse("participant_page", kwargs={"token": participant.token}))  # a participant's own page
    assert client.get(_url(study)).status_code == 302
    client.force_login(User.objects.create_user("plain", password="pw"))
    assert client.get(_url(study)).status_code == 403
    client.force_login(User.objects.create_user("staff", password="pw", is_staff=True))
    response = client.get(_url(study))
    assert response.status_code == 200
    assert "Not computed" in response.content.decode()  # representation only on request
    assert client.get(reverse("analysis:study_report", kwargs={"slug": "nope"})).status_code == 404


def test_a_study_that_has_just_started_renders_with_no_data_notes(client):
    group, members = make_group()
    client.force_login(User.objects.create_user("staff", password="pw", is_staff=True))
    response = client.get(_url(group.study, representation=1))
    assert response.status_code == 200
    page = response.content.decode()
    assert all(f'id="fig-{key}"' in page for key in FIGURE_KEYS)
    assert page.count("No data yet") >= 4
    assert Group.objects.get(pk=group.pk).phase == "opinion"


def test_report_command_writes_a_standalone_file(study, tmp_path):
    out = tmp_path / "report.html"
    call_command("report", study=study.slug, out=out, bootstrap=200)
    html = out.read_text()
    for key in FIGURE_KEYS:
        assert f'id="fig-{key}"' in html, key
    assert not re.search(r"<script[^>]+src=", html)  # plotly.js is inlined: nothing fetched
    assert len(html) > 3_000_000 and "Plotly.newPlot" in html
    assert "Not computed" not in html
    with pytest.raises(CommandError, match="No study"):
        call_command("report", study="missing", out=tmp_path / "x.html")
    with pytest.raises(CommandError, match="does not exist"):
        call_command("report", study=study.slug, out=tmp_path / "no" / "x.html")
    help_text = load_command_class("analysis", "report").create_parser("manage.py", "report").format_help()
    assert "--study" in help_text and "--no-representation" in help_text and "self-contained" in help_text


def test_study_admin_list_links_to_the_report(study, client):
    client.force_login(User.objects.create_superuser("root", password="pw"))
    page = client.get(reverse("admin:deliberation_study_changelist")).content.decode()
    assert f'href="{_url(study)}"' in page


def test_missing_embedding_model_is_a_note_not_an_error(study, client, monkeypatch):
    def missing(texts):
        raise RuntimeError("The all-MiniLM-L6-v2 weights are missing")

    monkeypatch.setattr("analysis.representation.embed", missing)
    client.force_login(User.objects.create_user("staff", password="pw", is_staff=True))
    response = client.get(_url(study, representation=1))
    assert response.status_code == 200
    assert "Could not embed the texts: The all-MiniLM-L6-v2 weights are missing" in response.content.decode()
