"""Best-of-N in a study: generate M candidates, score each for each member with a trained reward model,
show the K with the highest welfare; every prediction is stored per (member, candidate)."""
from __future__ import annotations

from io import StringIO

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from analysis.models import RewardModel
from analysis.reward.registry import reward_model_load
from analysis.reward.score import score_matrix
from core.welfare import welfare
from deliberation.models import Candidate, Prediction
from deliberation.selectors import participant_snapshot
from deliberation.services import opinion_submit
from generation.services import candidates_generate

from ..analysis.test_registry import TINY, make_rated_study
from ..factories import make_group, make_study

pytestmark = pytest.mark.django_db(transaction=True)
OPINIONS = [
    "Food taxes hit poor families hardest, so removing them is fair and simple.",
    "We need the revenue for schools; removing food taxes would cut public services.",
    "Remove taxes on basic groceries but keep them on sweets and luxury foods.",
]


@pytest.fixture
def reward_model(tmp_path, settings):
    import json

    settings.REWARD_MODELS_DIR = tmp_path
    out = StringIO()
    call_command("train_reward_model", "--study", make_rated_study().slug, *TINY, stdout=out, stderr=StringIO())
    return RewardModel.objects.get(pk=json.loads(out.getvalue())["reward_model_id"])


@pytest.mark.parametrize("method", ["utilitarian", "rawlsian"])
def test_best_of_n_shows_the_top_k_by_welfare_and_stores_every_prediction(reward_model, method):
    study = make_study(slug=f"bon-{method}", num_candidates=2, best_of_n=5, reward_model=reward_model,
                       welfare_method=method)
    study.full_clean()
    group, members = make_group(study, n=3)
    for member, text in zip(members, OPINIONS):
        opinion_submit(participant=member, text=text)
    candidates_generate(group_id=group.pk, round=1)
    candidates = list(Candidate.objects.filter(group=group, round=1).order_by("index"))
    assert len(candidates) == 5 and sum(c.shown for c in candidates) == 2
    assert Prediction.objects.filter(candidate__group=group).count() == 5 * 3
    # The shown ones are exactly the two best by the study's welfare of the stored predictions.
    u = np.array([[Prediction.objects.get(candidate=c, participant=m).predicted_agreement for c in candidates]
                  for m in members])
    expected = welfare(u, method)
    assert np.allclose([c.welfare for c in candidates], expected)
    best = sorted(range(5), key=lambda i: (-expected[i], i))[:2]
    assert {c.index for c in candidates if c.shown} == set(best)
    # The predictions are the registered model's own scores.
    direct = score_matrix(reward_model_load(reward_model.pk), group.question.text, OPINIONS,
                          [c.text for c in candidates])
    assert np.allclose(direct, u, atol=1e-4)
    shown_ids = {c.pk for c in candidates if c.shown}
    assert {c["id"] for c in participant_snapshot(members[0])["group"]["candidates"]} == shown_ids


def test_best_of_n_settings_are_validated(reward_model):
    study = make_study(slug="bon-bad", num_candidates=4, best_of_n=2, reward_model=reward_model)
    with pytest.raises(ValidationError, match="at least as many"):
        study.full_clean()
    study = make_study(slug="bon-nomodel", num_candidates=2, best_of_n=4)
    with pytest.raises(ValidationError, match="trained reward model"):
        study.full_clean()
