"""The Django side of reward models: ratings → records, training a registered model, loading it.

Everything else in ``analysis.reward`` is Django-free; this module is what the commands, the
Celery task and the admin call (services, HackSoft style).
"""
from __future__ import annotations

import time
import traceback
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from analysis.models import RewardModel
from deliberation.models import Critique, Opinion, Rating, Study

from .config import RewardConfig
from .data import RatingRecord, data_hash, member_text, split_by_group, usable
from .evaluate import baseline_predictions, ranking_metrics
from .model import embed_texts, save_checkpoint
from .score import from_trained, load_reward_model, score_pairs
from .train import Progress, train

PROGRESS_SAVE_SECONDS = 2.0


def reward_models_dir() -> Path:
    return Path(getattr(settings, "REWARD_MODELS_DIR", Path(settings.BASE_DIR) / "var" / "reward_models"))


def study_rating_records(*, study: Study, include_simulated: bool = False) -> list[RatingRecord]:
    """Every human rating in the study with an agreement or a rank, with the texts the model reads.

    Never the take-over bot's answers (``by_bot``): they are a policy's guesses, not anyone's preference, and its
    opinion is not the member's; simulated participants (``run_bots``) only with ``include_simulated``."""
    who = {"include_simulated": include_simulated}
    opinions = dict(((g, p), t) for g, p, t in Opinion.objects.filter(group__study=study).human(**who)
                    .values_list("group_id", "participant_id", "text"))
    critiques = dict(((g, p), t) for g, p, t in Critique.objects.filter(group__study=study).human(**who)
                     .values_list("group_id", "participant_id", "text"))
    ratings = (Rating.objects.filter(group__study=study).human(**who)
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


def reward_model_create(*, study: Study, config: RewardConfig, name: str = "") -> RewardModel:
    return RewardModel.objects.create(study=study, config=config.to_dict(),
                                      name=name or f"{study.slug} reward model")


def reward_model_train(*, reward_model_id: int, progress: Progress | None = None) -> RewardModel:
    """Train the registered model on its study's ratings (split by group), save, evaluate, record.

    Progress goes to the row every couple of seconds (visible in the admin) and to ``progress``.
    On failure the row is marked failed with the traceback and the error is raised again.
    """
    reward_model = RewardModel.objects.select_related("study").get(pk=reward_model_id)
    config = RewardConfig.from_dict(reward_model.config)
    RewardModel.objects.filter(pk=reward_model.pk).update(
        status=RewardModel.Status.RUNNING, started_at=timezone.now(), progress=0.0, error="",
        progress_message="loading ratings")
    try:
        records = study_rating_records(study=reward_model.study)
        train_idx, val_idx = split_by_group(records, config.val_fraction, config.seed)
        train_records = [records[i] for i in train_idx]
        val_records = [records[i] for i in val_idx]
        last_save = [0.0]

        def report(step: int, total: int, loss: float) -> None:
            if progress:
                progress(step, total, loss)
            now = time.monotonic()
            if now - last_save[0] >= PROGRESS_SAVE_SECONDS or step == total:
                last_save[0] = now
                RewardModel.objects.filter(pk=reward_model.pk).update(
                    progress=step / total, progress_message=f"step {step}/{total}, loss {loss:.4f}")

        result = train(config, train_records, progress=report)
        metrics = {"train": result.summary, "n_train_ratings": len(train_records),
                   "n_validation_ratings": len(val_records)}
        if val_records:
            rm = from_trained(result.model, result.tokenizer, config.max_length)
            pred = score_pairs(rm, [member_text(r.question, r.opinion, r.critique) for r in val_records],
                               [r.candidate for r in val_records])
            metrics["validation"] = ranking_metrics(val_records, pred)
        meta = {"config": config.to_dict(), "data_hash": data_hash(train_records), "metrics": metrics,
                "reward_model_id": reward_model.pk, "study": reward_model.study.slug}
        directory = save_checkpoint(result.model, result.tokenizer,
                                    reward_models_dir() / f"{reward_model.pk}-{reward_model.study.slug}", meta)
        with transaction.atomic():
            reward_model.refresh_from_db()
            reward_model.status = RewardModel.Status.DONE
            reward_model.progress = 1.0
            reward_model.progress_message = f"done: {result.steps} steps"
            reward_model.checkpoint_path = str(directory)
            reward_model.data_hash = meta["data_hash"]
            reward_model.metrics = metrics
            reward_model.validation_group_ids = sorted({r.group_id for r in val_records})
            reward_model.finished_at = timezone.now()
            reward_model.save()
            through = RewardModel.training_ratings.through
            through.objects.filter(rewardmodel_id=reward_model.pk).delete()
            through.objects.bulk_create([through(rewardmodel_id=reward_model.pk, rating_id=r.rating_id)
                                         for r in train_records if r.rating_id is not None], batch_size=5000)
        return reward_model
    except Exception:
        RewardModel.objects.filter(pk=reward_model.pk).update(
            status=RewardModel.Status.FAILED, error=traceback.format_exc()[-5000:], finished_at=timezone.now())
        raise


def reward_model_load(model_id: int, *, precision: str = "fp32"):
    """The registered model's checkpoint, loaded once per process (see ``score.load_reward_model``)."""
    reward_model = RewardModel.objects.get(pk=model_id)
    if reward_model.status != RewardModel.Status.DONE or not reward_model.checkpoint_path:
        raise ValueError(f"reward model {model_id} is {reward_model.status}, not trained")
    return load_reward_model(reward_model.checkpoint_path, precision=precision)


def reward_model_evaluate(*, reward_model: RewardModel, seed: int = 0) -> dict:
    """Model and baselines side by side on the held-out groups (all groups if none were held out)."""
    records = study_rating_records(study=reward_model.study)
    held_out = set(reward_model.validation_group_ids)
    test = [r for r in records if r.group_id in held_out] if held_out else records
    train_records = [r for r in records if r.group_id not in held_out]
    rm = reward_model_load(reward_model.pk)
    predictions = {"reward_model": score_pairs(rm, [member_text(r.question, r.opinion, r.critique) for r in test],
                                               [r.candidate for r in test])}
    predictions.update(baseline_predictions(train_records or test, test, seed=seed, embed=embed_texts))
    return {"reward_model_id": reward_model.pk, "study": reward_model.study.slug,
            "split": "held-out groups" if held_out else "all groups (none held out)",
            "n_groups": len({r.group_id for r in test}), "data_hash": reward_model.data_hash,
            "metrics": {name: ranking_metrics(test, pred) for name, pred in predictions.items()}}
