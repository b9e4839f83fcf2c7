"""The Django side of generator fine-tuning: endorsed statements → rows, training a registered version, choosing
the version a study serves (services, HackSoft style; the command, the Celery task and the admin call these).

Data: model-written candidates whose mean *human* quality rating is at least ``min_quality`` (the default of
``export --min-quality``), optionally only the groups' winners, read with ``analysis.exports.study_tables`` (bot
and simulated answers excluded) and ``sft_rows``. Whole groups are held out for the validation loss.

Rules: a version is trained once (its folder is written once, atomically; training a finished version again
makes a new version), and a fine-tune that fails never changes the version a study serves (``Study
.generator_model`` only changes through ``generator_model_use``).
"""
from __future__ import annotations

import time
import traceback
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from analysis.models import GeneratorModel
from deliberation.models import Study

from .train import GeneratorConfig, NoUsableRows, Progress, data_hash, fine_tune

PROGRESS_SAVE_SECONDS = 2.0


class GeneratorModelError(ValueError):
    """A generator cannot be fine-tuned or served as asked; the message says why and what to do."""


class TooLittleData(GeneratorModelError):
    pass


def generator_models_dir() -> Path:
    return Path(getattr(settings, "GENERATOR_MODELS_DIR", Path(settings.BASE_DIR) / "var" / "generator_models"))


def checkpoint_directory(generator_model: GeneratorModel) -> Path:
    return generator_models_dir() / f"{generator_model.pk}-{generator_model.study.slug}"


# --- selectors ------------------------------------------------------------------------------
def study_sft_rows(*, study: Study, min_quality: float, winners_only: bool = False,
                   include_simulated: bool = False) -> list[dict]:
    """The study's endorsed statements as SFT rows, ordered by candidate id: human ratings only, unless
    ``include_simulated`` (simulated participants' ratings too; take-over bot answers never)."""
    from analysis.exports import sft_rows, study_tables

    frame = sft_rows(study_tables(study, include_simulated=include_simulated), min_quality=min_quality,
                     winners_only=winners_only)
    return sorted(frame.to_dict("records"), key=lambda r: r["candidate_id"])


def training_data_check(*, study: Study, rows: list[dict], config: GeneratorConfig) -> None:
    """Raise ``TooLittleData`` with a clear message unless the rows can train and validate a generator."""
    groups = {r["group_id"] for r in rows}
    minimum = settings.GENERATOR_MIN_TRAINING_EXAMPLES
    if len(rows) < minimum or len(groups) < 2:
        raters = "human and simulated" if config.include_simulated else "human"
        selection = f"mean {raters} quality ≥ {config.min_quality}" + (", winners only" if config.winners_only else "")
        raise TooLittleData(
            f"Study {study.slug!r} has too little data to fine-tune the generator: {len(rows)} statement(s) "
            f"({selection}) in {len(groups)} group(s); at least {minimum} statements in at least 2 groups are "
            "needed (one group or more is held out for the validation loss). Lower --min-quality, drop "
            "--winners-only, or wait for more rated groups.")


def split_rows(rows: list[dict], config: GeneratorConfig) -> tuple[list[dict], list[dict], list[int]]:
    """(train, validation, validation group ids): whole groups held out, then the example caps."""
    from analysis.reward.holdout import held_out_groups

    held_out = held_out_groups({r["group_id"]: r["group_id"] for r in rows}, config.val_fraction, config.seed)
    train = [r for r in rows if r["group_id"] not in held_out][: config.max_train_examples]
    validation = [r for r in rows if r["group_id"] in held_out][: config.max_validation_examples]
    return train, validation, sorted(held_out)


# --- services -------------------------------------------------------------------------------
def generator_model_create(*, study: Study, config: GeneratorConfig, name: str = "",
                           parent: GeneratorModel | None = None) -> GeneratorModel:
    if parent is not None and (parent.status != GeneratorModel.Status.DONE or not parent.checkpoint_path):
        raise GeneratorModelError(f"Generator model {parent.pk} is {parent.status}, not trained: it cannot be a "
                                  "parent.")
    return GeneratorModel.objects.create(study=study, config=config.to_dict(), parent=parent,
                                         name=name or f"{study.slug} generator")


def generator_model_new_version(*, generator_model: GeneratorModel) -> GeneratorModel:
    """A queued copy (same study, config and parent) of a version: how a finished or failed one is trained again."""
    return GeneratorModel.objects.create(study=generator_model.study, config=generator_model.config,
                                         parent=generator_model.parent, name=generator_model.name)


def generator_model_train(*, generator_model_id: int, progress: Progress | None = None) -> GeneratorModel:
    """Fine-tune the registered version on its study's endorsed statements, save, record.

    On failure the row is marked failed with the reason and the error is raised again; the study's serving
    version is untouched either way (``generator_model_use`` changes it).
    """
    from generation.backends.embedded import BASE_MODEL

    generator_model = GeneratorModel.objects.select_related("study", "parent").get(pk=generator_model_id)
    if generator_model.status == GeneratorModel.Status.DONE:
        raise GeneratorModelError(f"Generator model {generator_model.pk} is already trained; its checkpoint is kept "
                                  "as it is. Fine-tune a new version instead.")
    if generator_model.status == GeneratorModel.Status.RUNNING:
        raise GeneratorModelError(f"Generator model {generator_model.pk} is being trained now; not started twice.")
    config = GeneratorConfig.from_dict(generator_model.config)
    parent = generator_model.parent
    GeneratorModel.objects.filter(pk=generator_model.pk).update(
        status=GeneratorModel.Status.RUNNING, started_at=timezone.now(), progress=0.0, error="",
        progress_message="loading statements",
        base_model=f"generator model {parent.pk} ({parent.checkpoint_path})" if parent else BASE_MODEL)
    try:
        directory = checkpoint_directory(generator_model)
        if directory.exists():
            raise GeneratorModelError(f"Checkpoint folder {directory} already exists; it is not overwritten. "
                                      "Fine-tune a new version instead.")
        rows = study_sft_rows(study=generator_model.study, min_quality=config.min_quality,
                              winners_only=config.winners_only, include_simulated=config.include_simulated)
        training_data_check(study=generator_model.study, rows=rows, config=config)
        train_rows, validation_rows, held_out = split_rows(rows, config)
        last_save = [0.0]

        def report(step: int, total: int, loss: float) -> None:
            if progress:
                progress(step, total, loss)
            now = time.monotonic()
            if now - last_save[0] >= PROGRESS_SAVE_SECONDS or step == total:
                last_save[0] = now
                GeneratorModel.objects.filter(pk=generator_model.pk).update(
                    progress=step / total, progress_message=f"step {step}/{total}, loss {loss:.4f}")

        result = fine_tune(config, train_rows, validation_rows, directory,
                           base_checkpoint=parent.checkpoint_path if parent else None, progress=report,
                           meta={"generator_model_id": generator_model.pk, "study": generator_model.study.slug})
        train_rows = result.train_rows  # those that fit max_length: what it was trained on
        hashed = data_hash(train_rows)
        metrics = {"validation_loss_before": result.validation_loss_before,
                   "validation_loss": result.validation_loss_after, "train_loss": result.train_loss,
                   "steps": result.steps, "seconds": result.seconds, "device": result.device,
                   "n_train": result.n_train, "n_validation": result.n_validation, "n_too_long": result.n_too_long,
                   "n_train_groups": len({r["group_id"] for r in train_rows}), "n_validation_groups": len(held_out),
                   "n_available": len(rows)}
        GeneratorModel.objects.filter(pk=generator_model.pk).update(
            status=GeneratorModel.Status.DONE, progress=1.0, checkpoint_path=str(directory), data_hash=hashed,
            metrics=metrics, training_candidate_ids=[r["candidate_id"] for r in train_rows],
            validation_group_ids=held_out, finished_at=timezone.now(),
            progress_message=f"done: {result.steps} steps, validation loss {result.validation_loss_before:.3f} → "
                             f"{result.validation_loss_after:.3f}")
        generator_model.refresh_from_db()
        return generator_model
    except Exception as exc:
        error = str(exc) if isinstance(exc, (GeneratorModelError, NoUsableRows)) else traceback.format_exc()[-5000:]
        GeneratorModel.objects.filter(pk=generator_model.pk).update(
            status=GeneratorModel.Status.FAILED, error=error, progress_message=f"failed: {str(exc)[:280]}",
            finished_at=timezone.now())
        raise


def generator_model_use(*, study: Study, generator_model: GeneratorModel | None) -> None:
    """Make ``generator_model`` (a finished version of this study; None: the base model) the one the study's
    embedded backend serves from now on."""
    if generator_model is not None:
        if generator_model.status != GeneratorModel.Status.DONE or not generator_model.checkpoint_path:
            raise GeneratorModelError(f"Generator model {generator_model.pk} is {generator_model.status}, not "
                                      "trained: it cannot be served.")
        if generator_model.study_id != study.pk:
            raise GeneratorModelError(f"Generator model {generator_model.pk} belongs to another study.")
    Study.objects.filter(pk=study.pk).update(generator_model=generator_model)
    study.generator_model = generator_model
