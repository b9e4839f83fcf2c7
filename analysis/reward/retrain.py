"""Retraining a study's reward model while it runs: every K finished groups, one training at a time.

A finished group sends ``analysis.tasks.reward_model_retrain`` (by name, from ``deliberation.services``). The
task asks for a retraining when K more groups have finished since the last one started (``retrain_request``),
then trains for as long as retrainings are pending (``retrain_run``). The study's ``RewardRetraining`` row,
locked with SELECT ... FOR UPDATE, is the guard: it names the version in training, and a request made during a
run only sets ``pending``, so any number of requests during a run make exactly one more run. A run whose worker
died (no heartbeat for ``settings.REWARD_RETRAIN_STALE_SECONDS``) no longer blocks the next.

Each run trains a new version on every human rating so far, then ``promotion_decide`` scores it and the version
in use on the same held-out groups (groups neither trained on) by the members' pairwise ranking accuracy and
promotes the new one only if it is better (the first version is promoted if it trained). A failed training or
an unreadable checkpoint leaves the version in use as it is; the decision and both scores go on the new version.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from analysis.models import RewardModel, RewardRetraining
from deliberation.models import Group, Study

from .config import RewardConfig
from .evaluate import ranking_metrics
from .registry import (
    CheckpointError,
    checkpoint_load,
    predict,
    reward_model_create,
    reward_model_is_training,
    reward_model_train,
    reward_model_trained_group_ids,
    study_rating_records,
)

logger = logging.getLogger(__name__)


def finished_group_count(study: Study) -> int:
    return Group.objects.filter(study=study, finished_at__isnull=False).count()


def _locked_state(study_id: int) -> RewardRetraining:
    RewardRetraining.objects.get_or_create(study_id=study_id)
    return (RewardRetraining.objects.select_for_update(of=("self",)).select_related("running_version")
            .get(study_id=study_id))


def _is_alive(version: RewardModel | None) -> bool:
    if version is None:
        return False
    if version.status == RewardModel.Status.QUEUED:  # claimed, about to start in the claiming worker
        return version.created_at > timezone.now() - timedelta(seconds=settings.REWARD_RETRAIN_STALE_SECONDS)
    return reward_model_is_training(version)


def retrain_config(study: Study) -> tuple[RewardConfig, str]:
    """(config, holdout) for the next version: defaults, then the version in use, then the study's overrides."""
    values: dict = {}
    holdout = RewardModel.Holdout.GROUP
    if study.reward_model_id:
        current = RewardModel.objects.get(pk=study.reward_model_id)
        values.update(current.config)
        holdout = current.holdout
    overrides = dict(study.reward_retrain_config or {})
    holdout = overrides.pop("holdout", holdout)
    values.update(overrides)
    return RewardConfig.from_dict(values), holdout


def retrain_request(*, study_id: int) -> bool:
    """Mark a retraining pending if K groups have finished since the last one started; True if one is pending."""
    with transaction.atomic():
        study = Study.objects.get(pk=study_id)
        state = _locked_state(study_id)
        every = study.reward_retrain_every
        if not every:
            return state.pending
        finished = finished_group_count(study)
        since = finished - state.finished_groups_at_last_run
        if since >= every and not state.pending:
            state.pending = True
            state.last_message = f"retraining asked for: {since} groups finished since the last one"
            state.save(update_fields=["pending", "last_message", "updated_at"])
        return state.pending


def retrain_claim(*, study_id: int, finished: RewardModel | None = None) -> RewardModel | None:
    """Release ``finished`` (the caller's own run) and, if a retraining is pending and none is running, create
    the new version and make it the running one. None: nothing to do, or another worker is training."""
    with transaction.atomic():
        state = _locked_state(study_id)
        if finished is not None and state.running_version_id == finished.pk:
            state.running_version = None
        if not state.pending or _is_alive(state.running_version):
            state.save()
            return None
        study = Study.objects.get(pk=study_id)
        state.pending = False
        state.finished_groups_at_last_run = finished_group_count(study)
        state.runs += 1
        parent = RewardModel.objects.filter(pk=study.reward_model_id).first()
        name = f"{study.slug} retrained #{state.runs}"
        try:
            config, holdout = retrain_config(study)
            version = reward_model_create(study=study, config=config, holdout=holdout, parent=parent, name=name)
        except (ValueError, TypeError) as exc:  # bad retraining settings: recorded, not raised
            version = RewardModel.objects.create(
                study=study, parent=parent, name=name, status=RewardModel.Status.FAILED, finished_at=timezone.now(),
                error=f"Bad retraining settings (Study.reward_retrain_config): {exc}",
                promotion={"promoted": False, "reason": f"bad retraining settings: {exc}"})
            state.last_message = version.error[:500]
            state.save()
            return None
        state.running_version = version
        state.last_message = f"training version {version.pk} on groups finished so far: " \
                             f"{state.finished_groups_at_last_run}"
        state.save()
        return version


def retrain_run(*, study_id: int) -> list[RewardModel]:
    """Train and judge new versions while retrainings are pending (none if another worker holds the study)."""
    versions: list[RewardModel] = []
    version = retrain_claim(study_id=study_id)
    while version is not None:
        try:
            version = retrain_version(version)
        finally:
            versions.append(version)
            version = retrain_claim(study_id=study_id, finished=version)
    return versions


def retrain_version(version: RewardModel) -> RewardModel:
    """Train one version and decide on its promotion; a failure is recorded on it, never raised."""
    try:
        reward_model_train(reward_model_id=version.pk)
    except Exception as exc:
        version.refresh_from_db()
        RewardModel.objects.filter(pk=version.pk).update(
            promotion={"promoted": False, "reason": f"training failed: {str(exc)[:1000]}",
                       "kept_version": version.study.reward_model_id})
        logger.warning("retraining version %s of study %s failed: %s", version.pk, version.study_id, exc)
        version.refresh_from_db()
        return version
    return promotion_decide(reward_model=RewardModel.objects.select_related("study").get(pk=version.pk))


def _pairwise_accuracy(rm, records) -> float | None:
    return ranking_metrics(records, predict(rm, records))["pairwise_accuracy"]


def promotion_compare(*, new: RewardModel, current: RewardModel | None) -> dict:
    """Both versions' pairwise ranking accuracy on the same held-out groups and whether the new one wins."""
    if current is None or current.pk == new.pk:
        return {"promoted": True, "reason": "first version: it trained", "compared_with": None}
    decision = {"compared_with": current.pk, "metric": "pairwise_accuracy"}
    groups = set(new.validation_group_ids) - reward_model_trained_group_ids(current)
    decision["group_ids"] = sorted(groups)
    records = [r for r in study_rating_records(
        study=new.study, include_simulated=bool((new.config or {}).get("include_simulated"))) if r.group_id in groups]
    decision["n_ratings"] = len(records)
    if not records:
        return {**decision, "promoted": False,
                "reason": "no held-out group that neither version trained on; the version in use stays"}
    try:
        new_score = _pairwise_accuracy(checkpoint_load(new.checkpoint_path), records)
    except CheckpointError as exc:
        return {**decision, "promoted": False, "reason": f"new checkpoint unreadable: {exc}"}
    decision["new_score"] = new_score
    try:
        current_score = _pairwise_accuracy(checkpoint_load(current.checkpoint_path), records)
    except CheckpointError as exc:
        return {**decision, "current_score": None, "promoted": new_score is not None,
                "reason": f"the version in use cannot be read ({exc})"}
    decision["current_score"] = current_score
    if new_score is None:
        return {**decision, "promoted": False, "reason": "no ranked pairs in the held-out groups"}
    if current_score is None or new_score > current_score:
        return {**decision, "promoted": True, "reason": "better pairwise accuracy on the same held-out groups"}
    return {**decision, "promoted": False, "reason": "not better than the version in use; it stays"}


def promotion_decide(*, reward_model: RewardModel) -> RewardModel:
    """Compare with the study's version in use and promote if better; the decision is recorded either way."""
    study = reward_model.study
    current = RewardModel.objects.filter(pk=study.reward_model_id).first()
    decision = promotion_compare(new=reward_model, current=current)
    with transaction.atomic():
        locked = Study.objects.select_for_update().get(pk=study.pk)
        if decision["promoted"] and locked.reward_model_id != (current.pk if current else None):
            decision = {**decision, "promoted": False,
                        "reason": "the study's reward model was changed while this version was judged"}
        if decision["promoted"]:
            Study.objects.filter(pk=study.pk).update(reward_model=reward_model)
            RewardModel.objects.filter(pk=reward_model.pk).update(promoted_at=timezone.now())
        else:
            decision["kept_version"] = locked.reward_model_id
        RewardModel.objects.filter(pk=reward_model.pk).update(promotion=decision)
    reward_model.refresh_from_db()
    return reward_model


def reward_model_promote(*, reward_model: RewardModel, user: str = "") -> None:
    """Make a trained version the study's model by hand (admin); its checkpoint must load."""
    checkpoint_load(reward_model.checkpoint_path)
    with transaction.atomic():
        Study.objects.select_for_update().filter(pk=reward_model.study_id).update(reward_model=reward_model)
        promotion = {**(reward_model.promotion or {}), "promoted": True, "reason": f"promoted by hand {user}".strip()}
        RewardModel.objects.filter(pk=reward_model.pk).update(promoted_at=timezone.now(), promotion=promotion)
