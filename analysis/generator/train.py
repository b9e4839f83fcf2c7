"""Supervised fine-tuning of the generator (SmolLM2-135M-Instruct by default) with TRL's ``SFTTrainer``; Django-free.

Rows are TRL's conversational prompt/completion format (``analysis.exports.sft_rows``): the prompt is the exact
rendered prompt stored with the candidate *without* its trailing assistant prefill (``response_prefix``, e.g.
"We"), and the completion is the whole statement, which starts with that prefix. The loss is on completion tokens
only. At serving time the prompt keeps the prefill (the provenance is replayed as stored) and the model continues
after it: the tokens it continues from are the ones it was trained on.

CPU defaults finish in minutes for SmolLM2-135M on a couple of cores: at most ``max_train_examples=80`` training
and ``max_validation_examples=20`` validation rows of at most ``max_length=512`` tokens (prompt + completion;
longer rows are left out, not cut, so that no completion loses its end), ``max_steps=20`` steps of batch 4
(one pass over 80 rows). A GPU is used when there is one (bf16 where it supports it). The checkpoint is a
LoRA adapter (``lora=True``, a few MB, merged onto its base at load) or the full model.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

Progress = Callable[[int, int, float], None]  # step, total steps, last training loss


@dataclass
class GeneratorConfig:
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    max_steps: int = 20
    batch_size: int = 4
    learning_rate: float | None = None  # None: 2e-4 with LoRA, 2e-5 for the full model
    max_length: int = 512  # tokens per prompt + completion (longer rows are left out)
    max_train_examples: int = 80
    max_validation_examples: int = 20
    val_fraction: float = 0.2  # share of groups held out for the validation loss
    seed: int = 0
    threads: int | None = None  # CPU threads; None: the embedded backend's default (half the cores, at most 4)
    min_quality: float = 5.0  # data selection, kept with the version so a retrain selects the same way
    winners_only: bool = False
    # Simulated participants' ratings count as data (the closed-loop benchmark opts in; real studies never do).
    include_simulated: bool = False
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GeneratorConfig:
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @property
    def lr(self) -> float:
        return self.learning_rate if self.learning_rate is not None else (2e-4 if self.lora else 2e-5)


@dataclass
class FineTuneResult:
    validation_loss_before: float
    validation_loss_after: float
    train_loss: float
    steps: int
    seconds: float
    device: str
    n_train: int
    n_validation: int
    n_too_long: int
    train_rows: list = field(default_factory=list, repr=False)


def row_dict(row: dict) -> dict:
    return {"prompt": list(row["prompt"]), "completion": list(row["completion"])}


def data_hash(rows: list[dict]) -> str:
    """sha256 of the training rows' prompts and completions, in order."""
    payload = json.dumps([row_dict(r) for r in rows], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


class NoUsableRows(ValueError):
    """No training or no validation row fits ``max_length``."""


def fitting_rows(tokenizer, rows: list[dict], max_length: int) -> list[dict]:
    """The rows whose chat-formatted prompt + completion fit ``max_length`` tokens."""
    kept = []
    for row in rows:
        ids = tokenizer.apply_chat_template(list(row["prompt"]) + list(row["completion"]), tokenize=True,
                                            return_dict=True)["input_ids"]
        if len(ids) <= max_length:
            kept.append(row)
    return kept


def fine_tune(config: GeneratorConfig, train_rows: list[dict], validation_rows: list[dict], directory: Path, *,
              base_checkpoint: str | None = None, meta: dict | None = None,
              progress: Progress | None = None) -> FineTuneResult:
    """Fine-tune from ``base_checkpoint`` (a fine-tuned version's folder; None: the base model) and write the
    checkpoint to ``directory``, which must not exist yet (a version's folder is written once, atomically)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import SFTConfig, SFTTrainer

    from generation.backends.embedded import CHECKPOINT_META, _default_threads, load_plain_weights

    if directory.exists():
        raise FileExistsError(f"{directory} exists; a version's checkpoint is never overwritten.")
    cuda = torch.cuda.is_available()
    if not cuda:
        torch.set_num_threads(config.threads or _default_threads())
    torch.manual_seed(config.seed)
    tokenizer, model = load_plain_weights(base_checkpoint)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    offered = len(train_rows), len(validation_rows)
    train_rows = fitting_rows(tokenizer, train_rows, config.max_length)
    validation_rows = fitting_rows(tokenizer, validation_rows, config.max_length)
    if not train_rows or not validation_rows:
        raise NoUsableRows(f"Of {offered[0]} training and {offered[1]} validation statements, {len(train_rows)} and "
                           f"{len(validation_rows)} fit max_length={config.max_length} tokens (prompt + statement); "
                           "both must be at least 1. Raise --max-length.")
    peft_config = None
    if config.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                 target_modules="all-linear", task_type="CAUSAL_LM")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}-"))
    bf16 = bool(cuda and torch.cuda.is_bf16_supported())
    args = SFTConfig(
        output_dir=str(staging / "trainer"), max_steps=config.max_steps, per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size, learning_rate=config.lr, lr_scheduler_type="constant",
        warmup_steps=0, max_length=config.max_length, packing=False, completion_only_loss=True,
        logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none", seed=config.seed,
        data_seed=config.seed, use_cpu=not cuda, bf16=bf16, dataloader_num_workers=0, dataset_num_proc=None,
        disable_tqdm=True, gradient_checkpointing=False,
    )

    class Report(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if progress and logs and "loss" in logs:
                progress(state.global_step, config.max_steps, float(logs["loss"]))

    started = time.perf_counter()
    try:
        trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer, peft_config=peft_config,
                             train_dataset=Dataset.from_list([row_dict(r) for r in train_rows]),
                             eval_dataset=Dataset.from_list([row_dict(r) for r in validation_rows]),
                             callbacks=[Report()])
        for noisy in (PrinterCallback, ProgressCallback):  # they print to stdout, where the command writes JSON
            trainer.remove_callback(noisy)
        before = float(trainer.evaluate()["eval_loss"])
        output = trainer.train()
        after = float(trainer.evaluate()["eval_loss"])
        shutil.rmtree(staging / "trainer", ignore_errors=True)
        trainer.model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        result = FineTuneResult(validation_loss_before=before, validation_loss_after=after,
                                train_loss=float(output.training_loss), steps=int(output.global_step),
                                seconds=round(time.perf_counter() - started, 1),
                                device="cuda" if cuda else f"cpu ({torch.get_num_threads()} threads)",
                                n_train=len(train_rows), n_validation=len(validation_rows),
                                n_too_long=sum(offered) - len(train_rows) - len(validation_rows))
        (staging / CHECKPOINT_META).write_text(json.dumps(
            {"base_checkpoint": base_checkpoint, "lora": config.lora, "config": config.to_dict(),
             "result": asdict(result), "data_hash": data_hash(train_rows), **(meta or {})}, indent=2))
        result.train_rows = train_rows
        staging.rename(directory)  # atomic: a folder with generator.json is always complete
        staging = None
        return result
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
