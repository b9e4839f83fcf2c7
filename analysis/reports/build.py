"""A study's whole report from plain data: metrics with group-bootstrap intervals, then every figure.

Pure (no database): ``analysis.reports.data`` produces the inputs. The minority-representation rows need
text embeddings, so the caller computes them (``analysis.representation.representation_frame``) or passes
None to leave that figure saying it was not computed.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import pandas as pd
import plotly.graph_objects as go

from analysis.loo import online_loo, winner_ratings_frame
from analysis.representation import pooled_representation
from core.metrics import StudyData, study_metrics

from . import figures

# Stable keys: the page and the standalone file put each figure in <div id="fig-KEY">.
FIGURE_KEYS = ("agreement", "quality", "endorsement", "preference", "change", "time", "dropout", "arms", "loo",
               "loo_offline", "representation")


@dataclass(frozen=True)
class ReportFigure:
    key: str
    figure: go.Figure

    @property
    def div_id(self) -> str:
        return f"fig-{self.key}"


@dataclass
class Report:
    title: str
    figures: list[ReportFigure]
    summary: pd.DataFrame
    loo: pd.DataFrame
    representation: pd.DataFrame | None
    offline_loo: pd.DataFrame | None = None
    counts: dict = field(default_factory=dict)
    arms: pd.DataFrame | None = None  # every metric per study arm (``arm_metrics``); None with one arm
    questionnaire: pd.DataFrame | None = None  # analysis.questionnaire.questionnaire_summary, one row per item


def arm_metrics(data: StudyData, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame | None:
    """Every metric per study arm, with the same group bootstrap as the rest of the report (the same groups
    resampled with the same seed): the arm takes the place of the condition, so the head-to-head preference
    compares arms too. None when the groups have fewer than two arms (``groups['arm']``, from ``load_study``)."""
    if "arm" not in data.groups.columns or data.groups["arm"].nunique() < 2:
        return None
    return study_metrics(replace(data, groups=data.groups.assign(condition=data.groups["arm"].astype(str))),
                         n_boot=n_boot, seed=seed)


def build_report(data: StudyData, *, representation: pd.DataFrame | None = None,
                 representation_note: str | None = None, offline_loo: pd.DataFrame | None = None,
                 offline_loo_note: str | None = None, n_boot: int = 1000, seed: int = 0,
                 dissent_at_most: int = 3) -> Report:
    """Every metric (one shared group bootstrap), the leave-one-out comparison and the figures, in order.

    ``representation_note``: shown in the representation figure when ``representation`` is None.
    ``offline_loo``: the rows of ``analysis.loo.offline_loo`` (an offline job's summary), if one was run;
    ``offline_loo_note`` says which job, or why there is none."""
    summary = study_metrics(data, n_boot=n_boot, seed=seed)
    loo = online_loo(winner_ratings_frame(data.ratings, data.groups), dissent_at_most=dissent_at_most,
                     n_boot=n_boot, seed=seed)
    pooled = pooled_representation(representation, n_boot=n_boot, seed=seed) if representation is not None else None
    arms = arm_metrics(data, n_boot=n_boot, seed=seed)
    built = {
        "agreement": figures.distribution_figure(summary, "agreement"),
        "quality": figures.distribution_figure(summary, "quality"),
        "endorsement": figures.endorsement_figure(summary),
        "preference": figures.preference_figure(summary),
        "change": figures.change_figure(summary),
        "time": figures.time_figure(summary),
        "dropout": figures.dropout_figure(summary),
        "arms": figures.arms_figure(arms),
        "loo": figures.loo_figure(loo),
        "loo_offline": figures.offline_loo_figure(offline_loo, note=offline_loo_note),
        "representation": figures.representation_figure(representation, pooled, note=representation_note),
    }
    counts = {
        "groups": len(data.groups),
        "finished groups": int((data.groups["phase"] == "done").sum()) if len(data.groups) else 0,
        "members": len(data.members),
        "ratings": len(data.ratings),
        "leave-one-out groups": int((data.groups["condition"] == "leave_one_out").sum()) if len(data.groups) else 0,
    }
    if "arm" in data.groups.columns and len(data.groups):
        counts.update({f"arm {name}": int(n) for name, n in data.groups["arm"].value_counts(sort=False)
                       .sort_index().items()})
    return Report(title=data.title, figures=[ReportFigure(k, built[k]) for k in FIGURE_KEYS], summary=summary,
                  loo=loo, representation=representation, offline_loo=offline_loo, counts=counts, arms=arms)
