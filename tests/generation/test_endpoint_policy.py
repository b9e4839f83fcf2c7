"""Admin fields cannot send secrets or requests anywhere: a study's API-key variable must be named
GENERATION_API_KEY[_SUFFIX] and its server's host must be in GENERATION_ALLOWED_HOSTS, on the form and again in
the worker, which records a refusal as the group's generation error and sends nothing."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from deliberation.models import GroupEvent, Study, StudyArm
from generation.backends import GenerationError
from generation.services import GenerationFailed, candidates_generate
from legibility.models import LegibilityStudy

from ..factories import make_group
from .test_generation_service import opinions_in
from .test_openai_backend import Flaky

REFUSED_VARIABLES = ["SECRET_KEY", "DATABASE_URL", "GENERATION_API_KEYX", "generation_api_key", "GENERATION_API_KEY_"]


@pytest.mark.parametrize("model", [Study, LegibilityStudy])
def test_the_form_refuses_a_secret_variable_or_a_host_not_allowed(model, settings):
    settings.GENERATION_ALLOWED_HOSTS = ["127.0.0.1", "localhost", "gpu.lab.example"]
    for name in ("", "GENERATION_API_KEY", "GENERATION_API_KEY_VLLM_2"):
        for url in ("", "http://127.0.0.1:8000/v1", "https://gpu.lab.example/v1", "http://LOCALHOST:9/v1"):
            model(slug="s", title="t", generation_backend="openai", generation_base_url=url,
                  generation_api_key_env=name).clean()
    for name in REFUSED_VARIABLES:
        with pytest.raises(ValidationError) as refused:
            model(slug="s", title="t", generation_api_key_env=name).clean()
        assert set(refused.value.message_dict) == {"generation_api_key_env"}
    for url in ("http://evil.example.com/v1", "http://127.0.0.1.evil.example/v1", "http://10.0.0.5:8000/v1"):
        with pytest.raises(ValidationError) as refused:
            model(slug="s", title="t", generation_base_url=url).clean()
        assert set(refused.value.message_dict) == {"generation_base_url"}
        assert "GENERATION_ALLOWED_HOSTS" in refused.value.message_dict["generation_base_url"][0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("refused", ["variable", "host"])
def test_the_worker_refuses_a_study_saved_around_the_form_records_it_and_sends_nothing(refused, flaky_server,
                                                                                       monkeypatch, settings):
    monkeypatch.setenv("SECRET_KEY", "the-servers-own-secret")
    monkeypatch.setenv("GENERATION_API_KEY", "sk-allowed")
    group, members = make_group(n=3)
    opinions_in(group, members)
    fields = {"generation_backend": "openai", "generation_base_url": flaky_server,
              "generation_api_key_env": "SECRET_KEY" if refused == "variable" else "GENERATION_API_KEY"}
    if refused == "host":
        settings.GENERATION_ALLOWED_HOSTS = ["localhost"]  # the stub listens on 127.0.0.1
    # As a bulk update or the shell would: no clean(). The server is the group's arm's, the key variable the study's.
    Study.objects.filter(pk=group.study_id).update(generation_api_key_env=fields.pop("generation_api_key_env"))
    StudyArm.objects.filter(pk=group.arm_id).update(**fields)
    with pytest.raises(GenerationFailed, match="refused by policy"):
        candidates_generate(group_id=group.pk, round=1)
    assert Flaky.calls == []  # no request, so no secret left the server
    group.refresh_from_db()
    assert group.phase == "generating" and "refused by policy" in group.generation_status
    assert GroupEvent.objects.filter(group=group, kind="generation_failed").exists()


def test_legibility_provers_check_before_building_a_backend(settings):
    settings.GENERATION_ALLOWED_HOSTS = ["127.0.0.1"]
    study = LegibilityStudy(slug="l", title="t", generation_backend="openai",
                            generation_base_url="http://127.0.0.1:8000/v1", generation_api_key_env="DATABASE_URL")
    with pytest.raises(GenerationError, match="GENERATION_API_KEY"):
        study.backend_options()
    study.generation_api_key_env = "GENERATION_API_KEY_LAB"
    assert study.backend_options()["base_url"] == "http://127.0.0.1:8000/v1"
