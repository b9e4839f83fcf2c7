"""Best-of-N scoring for the generation worker: every member's predicted agreement with every candidate.

Generation sits below analysis (docs/architecture.md), so ``generation.services.best_of_n_select`` calls this
through ``settings.BEST_OF_N_SCORER`` rather than importing it.
"""
from __future__ import annotations

import numpy as np

from .registry import reward_model_serving, study_rating_records
from .score import score_matrix


def member_utilities(*, study, question: str, member_ids: list[int], opinions: list[str], texts: list[str],
                     critiques: list[str] | None = None,
                     reward_model_id: int | None = None) -> tuple[object, np.ndarray]:
    """(the reward-model version used, members × candidates predicted agreement). ``reward_model_id``: the
    group's arm's version (``StudyArm.reward_model_version_id``); default the study's."""
    # The promoted version; an earlier promoted one if its checkpoint cannot be read (logged with the reason).
    version, model = reward_model_serving(study=study, reward_model_id=reward_model_id)
    # What the members rated so far in the study (earlier rounds, earlier groups): a hybrid model reads it.
    history = study_rating_records(study=study, participant_ids=member_ids,
                                   include_simulated=bool(version.config.get("include_simulated")))
    u = score_matrix(model, question, opinions, texts, critiques=critiques, member_ids=member_ids, history=history)
    return version, u
