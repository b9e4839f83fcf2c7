"""Legibility study report: per round and prover role, judge accuracy and time (bootstrap CIs over judges),
verifier AUC / balanced best-of-4 / attack success on held-out solutions, prover accuracy, and the
"legibility tax" (the helpful prover's accuracy against how well judges check it), as Plotly figures.

Frames come from the database (``*_frame``), statistics from ``legibility.metrics``, figures render with
``analysis.reports.render`` (a page fragment, or one standalone file with plotly.js inlined). Judges at
chance level are excluded, as in the paper.
"""
from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from django.db.models import Q
from plotly.offline import get_plotlyjs

from analysis.reports.build import ReportFigure
from analysis.reports.figures import COLORS, LAYOUT, empty_figure
from analysis.reports.render import STANDALONE_CSS, render_fragment

from .metrics import bootstrap_ci
from .models import JudgeItem, JudgeSession, LegibilityStudy, Solution, Verifier
from .services import session_stats

ROLE_ORDER = ("base", "helpful", "sneaky")
ROLE_COLORS = {"base": COLORS[0], "helpful": COLORS[2], "sneaky": COLORS[4]}


def role_label(source: str, role: str) -> str:
    return role or ("base" if source == Solution.Source.SHIPPED else "prover")


def _done() -> Q:
    return Q(answer__isnull=False) | Q(timed_out=True)


def judgement_frame(study: LegibilityStudy) -> pd.DataFrame:
    """One row per judged item (answered or timed out), with the judge's exclusion flag."""
    flagged = {s.pk: session_stats(s).flagged for s in JudgeSession.objects.filter(study=study)
               .select_related("study")}
    rows = JudgeItem.objects.filter(session__study=study).filter(
        _done()).values_list("session_id", "solution__round", "solution__source", "solution__role",
                                   "solution__correct", "answer", "timed_out", "response_ms", "is_gold")
    frame = pd.DataFrame(list(rows), columns=["judge", "round", "source", "role", "correct", "answer", "timed_out",
                                              "response_ms", "is_gold"])
    frame["role"] = [role_label(s, r) for s, r in zip(frame["source"], frame["role"], strict=True)]
    frame["right"] = (frame["answer"] == frame["correct"]) & frame["answer"].notna()
    frame["flagged"] = frame["judge"].map(flagged).fillna(True).astype(bool)
    return frame


def judge_summary(frame: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Accuracy (a timeout counts as wrong: judges were told to guess) and median seconds per round and role,
    95 % intervals resampling whole judges."""
    kept = frame[~frame["flagged"]] if len(frame) else frame
    out = []
    for (round_, role), part in kept.groupby(["round", "role"], sort=True):
        acc = bootstrap_ci(part["right"].to_numpy(dtype=float), clusters=part["judge"].tolist(), n_boot=n_boot,
                           seed=seed)
        answered = part[part["response_ms"].notna()]
        secs = bootstrap_ci(answered["response_ms"].to_numpy(dtype=float) / 1000, np.median,
                            clusters=answered["judge"].tolist(), n_boot=n_boot, seed=seed)
        out.append({"round": int(round_), "role": role, "accuracy": acc[0], "accuracy_low": acc[1],
                    "accuracy_high": acc[2], "median_seconds": secs[0], "seconds_low": secs[1],
                    "seconds_high": secs[2], "n": len(part), "judges": part["judge"].nunique(),
                    "timeouts": int(part["timed_out"].sum())})
    return pd.DataFrame(out, columns=["round", "role", "accuracy", "accuracy_low", "accuracy_high", "median_seconds",
                                      "seconds_low", "seconds_high", "n", "judges", "timeouts"])


def prover_frame(study: LegibilityStudy) -> pd.DataFrame:
    """Share of correct solutions per round and role (all halves: every solution a prover wrote)."""
    rows = Solution.objects.filter(problem__study=study).values_list("round", "source", "role", "correct")
    frame = pd.DataFrame(list(rows), columns=["round", "source", "role", "correct"])
    if not len(frame):
        return pd.DataFrame(columns=["round", "role", "accuracy", "n"])
    frame["role"] = [role_label(s, r) for s, r in zip(frame["source"], frame["role"], strict=True)]
    grouped = frame.groupby(["round", "role"], sort=True)["correct"]
    return grouped.agg(accuracy="mean", n="size").reset_index()


def verifier_frame(study: LegibilityStudy) -> pd.DataFrame:
    """Held-out metrics of each round's latest ready verifier."""
    rows = []
    for verifier in Verifier.objects.filter(study=study, status=Verifier.Status.READY).order_by("round", "created_at"):
        held = (verifier.metrics or {}).get("heldout") or {}
        rows.append({"round": verifier.round, "verifier": verifier.pk, "auc": held.get("auc"),
                     "balanced_best_of_4": held.get("balanced_best_of_4"),
                     "attack_success_rate": held.get("attack_success_rate"), "n_heldout": verifier.n_heldout})
    frame = pd.DataFrame(rows, columns=["round", "verifier", "auc", "balanced_best_of_4", "attack_success_rate",
                                        "n_heldout"])
    return frame.drop_duplicates("round", keep="last") if len(frame) else frame


def mixture_frame(study: LegibilityStudy) -> pd.DataFrame:
    """What each round's latest ready verifier trained on: per (round, role) group of earlier provers, the
    solutions available, used (after balancing), the most times one was repeated, and whether it counted."""
    latest = {}
    for verifier in Verifier.objects.filter(study=study, status=Verifier.Status.READY).order_by("round", "created_at"):
        latest[verifier.round] = verifier
    rows = [{"verifier_round": k, "verifier": v.pk, **group}
            for k, v in sorted(latest.items()) for group in (v.metrics or {}).get("mixture", [])]
    return pd.DataFrame(rows, columns=["verifier_round", "verifier", "group", "available", "used", "max_repeats",
                                       "counted"])


def _layout(fig: go.Figure, title: str, **kwargs) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0, xanchor="left"), **LAYOUT)
    fig.update_layout(**kwargs)
    return fig


def _bars_by_role(summary: pd.DataFrame, value: str, low: str, high: str, title: str, axis: str,
                  chance: float | None = None) -> go.Figure:
    if not len(summary):
        return empty_figure(title, "No judgements yet")
    fig = go.Figure()
    for role in [r for r in ROLE_ORDER if r in set(summary["role"])] + sorted(set(summary["role"]) - set(ROLE_ORDER)):
        part = summary[summary["role"] == role]
        est = part[value].to_numpy(dtype=float)
        fig.add_bar(x=[f"round {r}" for r in part["round"]], y=est, name=role,
                    marker_color=ROLE_COLORS.get(role, COLORS[3]),
                    error_y=dict(type="data", symmetric=False, array=np.nan_to_num(part[high] - est),
                                 arrayminus=np.nan_to_num(est - part[low]), thickness=1.2, width=3),
                    hovertext=[f"n = {n} from {j} judges" for n, j in zip(part["n"], part["judges"], strict=True)])
    if chance is not None:
        fig.add_hline(y=chance, line_dash="dot", line_color="#5b6875", annotation_text="chance")
    return _layout(fig, title, barmode="group", yaxis_title=axis)


def verifier_figure(frame: pd.DataFrame) -> go.Figure:
    title = "Verifier on held-out solutions, per round"
    if not len(frame):
        return empty_figure(title, "No trained verifier yet")
    fig = go.Figure()
    for column, name, color in (("auc", "AUC", COLORS[0]), ("balanced_best_of_4", "balanced best-of-4", COLORS[2]),
                                ("attack_success_rate", "sneaky attack success", COLORS[4])):
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.notna().any():
            fig.add_scatter(x=frame["round"], y=values, name=name, mode="lines+markers", line_color=color)
    fig.add_hline(y=0.5, line_dash="dot", line_color="#5b6875", annotation_text="chance")
    return _layout(fig, title, xaxis=dict(title="round", dtick=1), yaxis=dict(title="share", range=[0, 1]))


def prover_figure(frame: pd.DataFrame) -> go.Figure:
    title = "Prover accuracy (share of correct final answers)"
    if not len(frame):
        return empty_figure(title, "No solutions yet")
    fig = go.Figure()
    for role in [r for r in ROLE_ORDER if r in set(frame["role"])]:
        part = frame[frame["role"] == role]
        fig.add_bar(x=[f"round {r}" for r in part["round"]], y=part["accuracy"], name=role,
                    marker_color=ROLE_COLORS[role], hovertext=[f"n = {n}" for n in part["n"]])
    return _layout(fig, title, barmode="group", yaxis=dict(title="accuracy", range=[0, 1]))


def legibility_tax_figure(judges: pd.DataFrame, provers: pd.DataFrame) -> go.Figure:
    """Each round's helpful prover (the base prover at round 0): its accuracy against judges' accuracy on it."""
    title = "Legibility tax: prover accuracy vs judge accuracy, per round"
    wanted = ("base", "helpful")
    j = judges[judges["role"].isin(wanted)] if len(judges) else judges
    p = provers[provers["role"].isin(wanted)] if len(provers) else provers
    if not len(j) or not len(p):
        return empty_figure(title, "Needs judgements and solutions of the helpful prover")
    merged = j.merge(p, on=["round", "role"], suffixes=("_judge", "_prover")).sort_values("round")
    if not len(merged):
        return empty_figure(title, "Needs judgements and solutions of the helpful prover")
    est = merged["accuracy_judge"].to_numpy(dtype=float)
    fig = go.Figure()
    fig.add_scatter(x=merged["accuracy_prover"], y=est, mode="lines+markers+text", line_color=COLORS[2],
                    text=[f"round {r}" for r in merged["round"]], textposition="top center", name="helpful prover",
                    error_y=dict(type="data", symmetric=False, array=np.nan_to_num(merged["accuracy_high"] - est),
                                 arrayminus=np.nan_to_num(est - merged["accuracy_low"]), thickness=1.2, width=3))
    return _layout(fig, title, xaxis=dict(title="prover accuracy", range=[0, 1]),
                   yaxis=dict(title="judge accuracy", range=[0, 1]))


def study_figures(study: LegibilityStudy, *, n_boot: int = 1000, seed: int = 0) -> list[ReportFigure]:
    judges = judge_summary(judgement_frame(study), n_boot=n_boot, seed=seed)
    provers = prover_frame(study)
    return [
        ReportFigure("legibility-judge-accuracy", _bars_by_role(
            judges, "accuracy", "accuracy_low", "accuracy_high",
            "Judge accuracy per round and prover (timeouts count as wrong)", "accuracy", chance=0.5)),
        ReportFigure("legibility-judge-time", _bars_by_role(
            judges, "median_seconds", "seconds_low", "seconds_high", "Median seconds per judgement", "seconds")),
        ReportFigure("legibility-verifier", verifier_figure(verifier_frame(study))),
        ReportFigure("legibility-prover", prover_figure(provers)),
        ReportFigure("legibility-tax", legibility_tax_figure(judges, provers)),
    ]


def study_tables(study: LegibilityStudy, *, n_boot: int = 1000, seed: int = 0) -> dict[str, pd.DataFrame]:
    """The numbers behind the figures, per round: judges (accuracy, median seconds, 95 % intervals; judges at
    chance level excluded), verifiers (held-out AUC, balanced best-of-4, attack success), each verifier's
    training mixture and provers."""
    return {"judges": judge_summary(judgement_frame(study), n_boot=n_boot, seed=seed),
            "verifiers": verifier_frame(study), "verifier mixture": mixture_frame(study),
            "provers": prover_frame(study)}


def tables_text(tables: dict[str, pd.DataFrame]) -> str:
    """``study_tables`` as plain text for a terminal (3 decimals)."""
    parts = []
    for name, frame in tables.items():
        body = frame.to_string(index=False, float_format=lambda x: f"{x:.3f}") if len(frame) else "(none yet)"
        parts.append(f"{name}:\n{body}")
    return "\n\n".join(parts)


def study_counts(study: LegibilityStudy) -> dict:
    sessions = list(JudgeSession.objects.filter(study=study).select_related("study"))
    return {"judges": len(sessions), "excluded at chance": sum(session_stats(s).flagged for s in sessions),
            "judgements": JudgeItem.objects.filter(session__study=study).filter(_done()).count(),
            "solutions": Solution.objects.filter(problem__study=study).count(),
            "verifiers": Verifier.objects.filter(study=study, status=Verifier.Status.READY).count()}


def _counts_line(counts: dict) -> str:
    return " · ".join(f"{k}: {v}" for k, v in counts.items())


def study_report_fragment(study: LegibilityStudy, *, n_boot: int = 1000) -> str:
    """The figures as HTML for the analyst page (which loads plotly.js itself)."""
    return (f'<p class="muted">{html.escape(_counts_line(study_counts(study)))}. Error bars: 95% intervals '
            f"from resampling judges; judges at chance level excluded.</p>\n"
            + render_fragment(study_figures(study, n_boot=n_boot)) + _mixture_html(study))


def _mixture_html(study: LegibilityStudy) -> str:
    frame = mixture_frame(study)
    if not len(frame):
        return ""
    return ("<h2>Verifier training mixture</h2>\n<p class=\"muted\">Each (round, role) of earlier provers "
            "contributes equally; groups under the minimum size do not count; no solution is repeated more than "
            "max_repeats times.</p>\n" + frame.to_html(index=False, border=0, classes="table"))


def study_report_standalone(study: LegibilityStudy, *, n_boot: int = 1000, generated: str = "") -> str:
    """One self-contained HTML file (plotly.js inlined), to send or archive."""
    title = html.escape(study.title)
    stamp = f" · generated {html.escape(generated)}" if generated else ""
    return ("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{title} · legibility report</title>\n<style>{STANDALONE_CSS}</style>\n"
            f"<script type=\"text/javascript\">{get_plotlyjs()}</script>\n</head>\n<body>\n<main class=\"page\">\n"
            f"<h1>{title}</h1>\n{study_report_fragment(study, n_boot=n_boot).replace('.</p>', stamp + '.</p>', 1)}\n"
            "</main>\n</body>\n</html>\n")


def plotly_js() -> str:
    return get_plotlyjs()

