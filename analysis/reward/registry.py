"""The Django side of reward models: ratings → records, training a registered version, loading it, evaluating it.

Everything else in ``analysis.reward`` is Django-free; this module is what the commands, the Celery tasks and
the admin call (services, HackSoft style). Retraining while a study runs is in ``analysis.reward.retrain``.

Rules kept here: a version is trained once (its checkpoint folder is never written twice; training a finished
version again makes a new version), a version is never scored on groups it trained on, and a study with too
few ratings or an unreadable checkpoint gives a message that says so.
"""
from __future__ import annotations

import logging
import time
import traceback
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from analysis.models import RewardModel
from deliberation.models import Critique, Group, Opinion, Rating, Study

from .config import RewardConfig
from .data import RatingRecord, data_hash, usable
from .evaluate import baseline_predictions, ranking_metrics
from .holdout import held_out_groups
from .model import embed_texts, is_checkpoint, save_checkpoint
from .score import from_trained, load_reward_model, score_records
from .train import Progress, train

PROGRESS_SAVE_SECONDS = 2.0
logger = logging.getLogger(__name__)


class RewardModelError(ValueError):
    """A reward model cannot be trained, loaded or evaluated as asked; the message says why and what to do."""


class TooFewRatings(RewardModelError):
    pass


class CheckpointError(RewardModelError):
    pass


def reward_models_dir() -> Path:
    return Path(getattr(settings, "REWARD_MODELS_DIR", Path(settings.BASE_DIR) / "var" / "reward_models"))


def study_rating_records(*, study: Study, include_simulated: bool = False,
                         participant_ids=None) -> list[RatingRecord]:
    """Every human rating in the study with an agreement or a rank, with the texts the model reads
    (only those of ``participant_ids`` when given: the members' history for best-of-N).

    Never the take-over bot's answers (``by_bot``): they are a policy's guesses, not anyone's preference, and its
    opinion is not the member's; simulated participants (``run_bots``) only with ``include_simulated``."""
    who = {"include_simulated": include_simulated}
    scope = {"group__study": study}
    if participant_ids is not None:
        scope["participant_id__in"] = list(participant_ids)
    opinions = dict(((g, p), t) for g, p, t in Opinion.objects.filter(**scope).human(**who)
                    .values_list("group_id", "participant_id", "text"))
    critiques = dict(((g, p), t) for g, p, t in Critique.objects.filter(**scope).human(**who)
                     .values_list("group_id", "participant_id", "text"))
    ratings = (Rating.objects.filter(**scope).human(**who)
               .select_related("candidate", "group__question").order_by("id"))
    records = [
        RatingRecord(group_id=r.group_id, member_id=r.participant_id, round=r.round,
                     question=r.group.question.text, opinion=opinions.get((r.group_id, r.participant_id), ""),
                     critique=critiques.get((r.group_id, r.participant_id), "") if r.round >= 2 else "",
                     candidate=r.candidate.text, candidate_id=r.candidate_id, agreement=r.agreement, rank=r.rank,
                     rating_id=r.pk)
        for r in ratings.iterator(chunk_size=2000)
    ]
    return usable(records)


def training_data_check(*, study: Study, records: list[RatingRecord]) -> None:
    """Raise ``TooFewRatings`` with a clear message unless the ratings can train and validate a model."""
    groups = {r.group_id for r in records}
    if not records:
        raise TooFewRatings(f"Study {study.slug!r} has no ratings with an agreement or a rank yet: nothing to train "
                            "a reward model on.")
    if len(records) < settings.REWARD_MIN_TRAINING_RATINGS or len(groups) < 2:
        minimum = settings.REWARD_MIN_TRAINING_RATINGS
        raise TooFewRatings(
            f"Study {study.slug!r} has too few ratings to train a reward model: {len(records)} usable rating(s) in "
            f"{len(groups)} group(s); at least {minimum} ratings in at least 2 groups are needed (one group or more "
            "is held out to validate it).")


# --- selectors ------------------------------------------------------------------------------
def group_holdout_units(*, group_ids, holdout: str) -> dict:
    """Each group's held-out unit: the group, its question, or its question's topic (``subtopic`` if the
    question has one, else ``topic``; a question without a topic is a topic of its own)."""
    if holdout == RewardModel.Holdout.GROUP:
        return {g: g for g in group_ids}
    if holdout not in RewardModel.Holdout.values:
        raise RewardModelError(f"unknown holdout {holdout!r}; use one of {', '.join(RewardModel.Holdout.values)}")
    units = {}
    for group_id, question_id, subtopic, topic in Group.objects.filter(pk__in=list(group_ids)).values_list(
            "id", "question_id", "question__subtopic", "question__topic"):
        if holdout == RewardModel.Holdout.QUESTION:
            units[group_id] = ("question", question_id)
        elif subtopic not in (None, ""):
            units[group_id] = ("subtopic", subtopic)
        elif topic not in (None, ""):
            units[group_id] = ("topic", topic)
        else:
            units[group_id] = ("question", question_id)
    return units


def reward_model_trained_group_ids(reward_model: RewardModel) -> set:
    """The groups whose ratings the version was trained on (older rows: from their training ratings)."""
    if reward_model.trained_group_ids:
        return set(reward_model.trained_group_ids)
    return set(Rating.objects.filter(pk__in=reward_model.training_ratings.values("pk"))
               .values_list("group_id", flat=True).distinct())


def reward_model_is_training(reward_model: RewardModel) -> bool:
    """Running with a recent heartbeat; a run silent for ``REWARD_RETRAIN_STALE_SECONDS`` had its worker die."""
    if reward_model.status != RewardModel.Status.RUNNING:
        return False
    stale = timedelta(seconds=settings.REWARD_RETRAIN_STALE_SECONDS)
    return (reward_model.heartbeat_at or reward_model.created_at) > timezone.now() - stale


def checkpoint_directory(reward_model: RewardModel) -> Path:
    return reward_models_dir() / f"{reward_model.pk}-{reward_model.study.slug}"


def predict(rm, records: list[RatingRecord]):
    """Predicted agreement (1–7) for each record (its own rating is never read)."""
    return score_records(rm, records)


# --- services -------------------------------------------------------------------------------
def reward_model_create(*, study: Study, config: RewardConfig, name: str = "", holdout: str = "group",
                        parent: RewardModel | None = None) -> RewardModel:
    if holdout not in RewardModel.Holdout.values:
        raise RewardModelError(f"unknown holdout {holdout!r}; use one of {', '.join(RewardModel.Holdout.values)}")
    return RewardModel.objects.create(study=study, config=config.to_dict(), holdout=holdout, parent=parent,
                                      name=name or f"{study.slug} reward model")


def reward_model_new_version(*, reward_model: RewardModel) -> RewardModel:
    """A queued copy (same study, config and holdout) of a version: how a trained version is trained again."""
    return RewardModel.objects.create(study=reward_model.study, config=reward_model.config,
                                      holdout=reward_model.holdout, parent=reward_model, name=reward_model.name)


def reward_model_train(*, reward_model_id: int, progress: Progress | None = None) -> RewardModel:
    """Train the registered version on its study's ratings (holding out groups, questions or topics), save,
    evaluate, record.

    Progress goes to the row every couple of seconds (visible in the admin) and to ``progress``.
    On failure the row is marked failed with the reason (``RewardModelError``) or the traceback and the error
    is raised again. A version that finished (or has files in its folder) is never trained again.
    """
    reward_model = RewardModel.objects.select_related("study").get(pk=reward_model_id)
    if reward_model.status == RewardModel.Status.DONE:
        raise RewardModelError(f"Reward model {reward_model.pk} is already trained; its checkpoint is kept as it is. "
                               "Train a new version instead (admin action or manage.py train_reward_model).")
    if reward_model_is_training(reward_model):
        raise RewardModelError(f"Reward model {reward_model.pk} is being trained now; not started twice.")
    config = RewardConfig.from_dict(reward_model.config)
    now = timezone.now()
    RewardModel.objects.filter(pk=reward_model.pk).update(
        status=RewardModel.Status.RUNNING, started_at=now, heartbeat_at=now, progress=0.0, error="",
        progress_message="loading ratings")
    try:
        directory = checkpoint_directory(reward_model)
        if directory.exists() and any(directory.iterdir()):
            raise CheckpointError(f"Checkpoint folder {directory} already holds files; it is not overwritten. "
                                  "Train a new version instead.")
        records = study_rating_records(study=reward_model.study, include_simulated=config.include_simulated)
        training_data_check(study=reward_model.study, records=records)
        held_out = held_out_groups(group_holdout_units(group_ids={r.group_id for r in records},
                                                       holdout=reward_model.holdout),
                                   config.val_fraction, config.seed)
        train_records = [r for r in records if r.group_id not in held_out]
        val_records = [r for r in records if r.group_id in held_out]
        last_save = [0.0]

        def report(step: int, total: int, loss: float) -> None:
            if progress:
                progress(step, total, loss)
            now = time.monotonic()
            if now - last_save[0] >= PROGRESS_SAVE_SECONDS or step == total:
                last_save[0] = now
                RewardModel.objects.filter(pk=reward_model.pk).update(
                    progress=step / total, progress_message=f"step {step}/{total}" + (f", loss {loss:.4f}" if loss == loss else ""),
                    heartbeat_at=timezone.now())

        result = train(config, train_records, progress=report)
        metrics = {"train": result.summary, "n_train_ratings": len(train_records),
                   "n_validation_ratings": len(val_records), "holdout": reward_model.holdout,
                   "n_train_groups": len({r.group_id for r in train_records}), "n_validation_groups": len(held_out)}
        if val_records:
            metrics["validation"] = ranking_metrics(
                val_records, predict(from_trained(result.model, result.tokenizer, config.max_length), val_records))
        meta = {"config": config.to_dict(), "data_hash": data_hash(train_records), "metrics": metrics,
                "reward_model_id": reward_model.pk, "study": reward_model.study.slug}
        save_checkpoint(result.model, result.tokenizer, directory, meta)
        checkpoint_load(directory)  # what was written can be read back, or this version fails here
        with transaction.atomic():
            reward_model.refresh_from_db()
            reward_model.status = RewardModel.Status.DONE
            reward_model.progress = 1.0
            reward_model.progress_message = f"done: {result.steps} steps"
            reward_model.checkpoint_path = str(directory)
            reward_model.data_hash = meta["data_hash"]
            reward_model.metrics = metrics
            reward_model.validation_group_ids = sorted(held_out)
            reward_model.trained_group_ids = sorted({r.group_id for r in train_records})
            reward_model.finished_at = timezone.now()
            reward_model.save()
            through = RewardModel.training_ratings.through
            through.objects.filter(rewardmodel_id=reward_model.pk).delete()
            through.objects.bulk_create([through(rewardmodel_id=reward_model.pk, rating_id=r.rating_id)
                                         for r in train_records if r.rating_id is not None], batch_size=5000)
        return reward_model
    except Exception as exc:
        error = str(exc) if isinstance(exc, RewardModelError) else traceback.format_exc()[-5000:]
        RewardModel.objects.filter(pk=reward_model.pk).update(
            status=RewardModel.Status.FAILED, error=error, progress_message=f"failed: {str(exc)[:280]}",
            finished_at=timezone.now())
        raise


def checkpoint_load(directory: str | Path, *, precision: str = "fp32"):
    """The checkpoint in ``directory``, or ``CheckpointError`` saying that it is missing or unreadable."""
    path = Path(directory)
    if not is_checkpoint(path):
        raise CheckpointError(f"Checkpoint {path} is missing (no model.safetensors or hybrid.json there).")
    try:
        return load_reward_model(path, precision=precision)
    except Exception as exc:
        raise CheckpointError(f"Checkpoint {path} is unreadable ({type(exc).__name__}: {exc}).") from exc


def reward_model_load(model_id: int, *, precision: str = "fp32"):
    """The registered version's checkpoint, loaded once per process (see ``score.load_reward_model``)."""
    reward_model = RewardModel.objects.filter(pk=model_id).first()
    if reward_model is None:
        raise RewardModelError(f"There is no reward model {model_id}.")
    if reward_model.status != RewardModel.Status.DONE or not reward_model.checkpoint_path:
        raise RewardModelError(f"Reward model {model_id} is {reward_model.status}, not trained.")
    try:
        return checkpoint_load(reward_model.checkpoint_path, precision=precision)
    except CheckpointError as exc:
        raise CheckpointError(f"Reward model {model_id}: {exc}") from exc


def reward_model_serving(*, study: Study, precision: str = "fp32", reward_model_id: int | None = None):
    """(version, loaded model) that best-of-N uses: ``reward_model_id`` (an arm's own version) or the study's
    promoted version, or, if its checkpoint cannot be loaded (reported in the log with the reason), the latest
    earlier promoted version that can."""
    wanted = reward_model_id or study.reward_model_id
    if not wanted:
        raise RewardModelError(f"Study {study.slug!r} has no reward model; train one and set it on the study.")
    try:
        return RewardModel.objects.get(pk=wanted), reward_model_load(wanted, precision=precision)
    except RewardModelError as exc:
        problem = exc
    logger.error("study %s: its reward model cannot be used (%s); falling back to an earlier promoted version",
                 study.slug, problem)
    earlier = (RewardModel.objects.filter(study=study, status=RewardModel.Status.DONE, promoted_at__isnull=False)
               .exclude(pk=wanted).order_by("-promoted_at"))
    for version in earlier:
        try:
            return version, reward_model_load(version.pk, precision=precision)
        except RewardModelError as exc:
            logger.error("study %s: earlier version %s cannot be used either (%s)", study.slug, version.pk, exc)
    raise CheckpointError(f"{problem} No earlier promoted version of study {study.slug!r} could be loaded.")


def reward_model_evaluate(*, reward_model: RewardModel, seed: int = 0) -> dict:
    """Model and baselines side by side on groups the model never trained on: the groups it held out, and
    groups whose ratings came after it was trained. Raises ``RewardModelError`` when there are none."""
    records = study_rating_records(study=reward_model.study)
    trained_on = reward_model_trained_group_ids(reward_model)
    held_out = set(reward_model.validation_group_ids) - trained_on
    test = [r for r in records if r.group_id not in trained_on]
    if not test:
        raise RewardModelError(
            f"Reward model {reward_model.pk} trained on every group of study {reward_model.study.slug!r} that has "
            "ratings; scoring it on them would measure memory, not prediction. Train a version that holds groups "
            "out (--val-fraction above 0) or wait for new groups.")
    train_records = [r for r in records if r.group_id in trained_on]
    rm = reward_model_load(reward_model.pk)
    predictions = {"reward_model": predict(rm, test)}
    predictions.update(baseline_predictions(train_records or test, test, seed=seed, embed=embed_texts))
    test_groups = {r.group_id for r in test}
    return {"reward_model_id": reward_model.pk, "study": reward_model.study.slug,
            "split": "groups it did not train on", "holdout": reward_model.holdout,
            "n_groups": len(test_groups), "n_groups_held_out": len(test_groups & held_out),
            "n_groups_new_since_training": len(test_groups - held_out),
            "n_groups_trained_on_not_scored": len(trained_on), "data_hash": reward_model.data_hash,
            "metrics": {name: ranking_metrics(test, pred) for name, pred in predictions.items()}}
