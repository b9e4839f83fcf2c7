"""One builder per report figure: summary frames in (see ``core.metrics.SUMMARY_COLUMNS``,
``analysis.loo.RESULT_COLUMNS``, ``analysis.representation``), a plotly figure out.

Every builder copes with missing data by returning a figure that says "no data yet", so a study that has
just started (or a partial one) still renders. Error bars are the group-bootstrap intervals.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.metrics import INPUT_PHASES, LIKERT

ROUND_NAMES = {1: "first winner", 2: "revised winner"}
PHASE_NAMES = {"opinion": "opinion", "generating": "writing statements", "rating": "rating",
               "critique": "critique", "revising": "revising", "final_rating": "final rating"}
COLORS = ("#1f6feb", "#d97706", "#16a34a", "#9333ea", "#dc2626", "#0891b2")
# A small template built once: plotly's named templates are deep-copied into every figure (~50 ms each).
TEMPLATE = go.layout.Template(layout=dict(
    colorway=list(COLORS), plot_bgcolor="white", paper_bgcolor="white", hovermode="closest",
    xaxis=dict(gridcolor="#e5e7eb", zerolinecolor="#c9d1d9", automargin=True),
    yaxis=dict(gridcolor="#e5e7eb", zerolinecolor="#c9d1d9", automargin=True)))
# The legend sits at the bottom of the figure's box (not of the plot), below the axis titles, so that on a
# phone a legend that wraps onto several lines grows into the margin instead of covering the bars.
LAYOUT = dict(template=TEMPLATE, height=440, margin=dict(l=50, r=20, t=80, b=130),
              legend=dict(orientation="h", yref="container", yanchor="bottom", y=0.01, x=0), font=dict(size=12))


def _layout(fig: go.Figure, title: str, **kwargs) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0, xanchor="left"), **LAYOUT)
    fig.update_layout(**kwargs)
    return fig


def empty_figure(title: str, message: str = "No data yet") -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=16, color="#5b6875"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title, height=240, margin=dict(l=20, r=20, t=80, b=20))


def _errors(part: pd.DataFrame) -> dict:
    estimate = part["estimate"].to_numpy(dtype=float)
    return dict(type="data", symmetric=False, array=np.nan_to_num(part["high"].to_numpy(dtype=float) - estimate),
                arrayminus=np.nan_to_num(estimate - part["low"].to_numpy(dtype=float)), thickness=1.2, width=3)


def _hover(part: pd.DataFrame, unit: str = "share") -> list[str]:
    fmt = "{:.1%}" if unit == "share" else "{:.2f}"
    return [f"{fmt.format(e)} [{fmt.format(lo)}, {fmt.format(hi)}]<br>n = {n:.0f} in {g} groups"
            for e, lo, hi, n, g in part[["estimate", "low", "high", "n", "groups"]].itertuples(index=False)]


def _select(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    return summary[summary["metric"] == metric] if len(summary) else summary


def _series(summary: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(legend name, rows) per round and condition present."""
    out = []
    for (round_, condition), part in summary.groupby(["round", "condition"], sort=True):
        name = ROUND_NAMES.get(int(round_), f"round {round_}") if int(round_) else ""
        name = f"{name} · {condition}" if name else str(condition)
        out.append((name, part))
    return out


def distribution_figure(summary: pd.DataFrame, measure: str) -> go.Figure:
    """Share of all ratings at each level of the 7-point scale, per round and condition."""
    title = f"{measure.title()} ratings (all statements)"
    rows = _select(summary, measure)
    if not len(rows):
        return empty_figure(title)
    fig = go.Figure()
    for i, (name, part) in enumerate(_series(rows)):
        part = part.assign(level=part["label"].astype(int)).sort_values("level")
        fig.add_bar(x=part["level"], y=part["estimate"], name=name, error_y=_errors(part),
                    hovertext=_hover(part), hoverinfo="text+name", marker_color=COLORS[i % len(COLORS)])
    fig.update_xaxes(title="rating (1 = " + ("strongly disagree" if measure == "agreement" else "terrible") + ", 7 = "
                     + ("strongly agree)" if measure == "agreement" else "excellent)"), tickvals=list(LIKERT))
    fig.update_yaxes(title="share of ratings", tickformat=".0%")
    return _layout(fig, title, barmode="group")


def _by_round_bars(rows: pd.DataFrame, title: str, ytitle: str, unit: str = "share",
                   reference: float | None = None) -> go.Figure:
    fig = go.Figure()
    for i, (condition, part) in enumerate(rows.groupby("condition", sort=True)):
        part = part.sort_values("round")
        fig.add_bar(x=[ROUND_NAMES.get(int(r), f"round {r}") for r in part["round"]], y=part["estimate"],
                    name=str(condition), error_y=_errors(part), hovertext=_hover(part, unit), hoverinfo="text+name",
                    marker_color=COLORS[i % len(COLORS)])
    if reference is not None:
        fig.add_hline(y=reference, line_dash="dot", line_color="#5b6875")
    fig.update_yaxes(title=ytitle, tickformat=".0%" if unit == "share" else None,
                     range=[0, 1] if unit == "share" else None)
    return _layout(fig, title, barmode="group")


def endorsement_figure(summary: pd.DataFrame) -> go.Figure:
    """Share of members who agree with their group's winner (agreement >= 5)."""
    title = "Endorsement of the winner<br><sup>members rating their agreement ≥ 5 of 7</sup>"
    rows = _select(summary, "endorsement")
    return _by_round_bars(rows, title, "share of members") if len(rows) else empty_figure(title)


def arms_figure(arm_summary: pd.DataFrame | None) -> go.Figure:
    """Endorsement of the winner per study arm (``build.arm_metrics``: the arms take the place of conditions)."""
    title = "Arms compared<br><sup>endorsement of the winner per arm; intervals from resampling groups</sup>"
    if arm_summary is None:
        return empty_figure(title, "One arm only: nothing to compare")
    rows = _select(arm_summary, "endorsement")
    return _by_round_bars(rows, title, "share of members") if len(rows) else empty_figure(title)


def preference_figure(summary: pd.DataFrame) -> go.Figure:
    """Share of head-to-head comparisons the winner won, per comparator: the other candidates, the members'
    own and the other members' opinions (where shown as candidates), and the winners of another condition."""
    title = ("Preference for the winner<br><sup>share of head-to-head comparisons won, by comparator "
             "(0.5 = no preference)</sup>")
    rows = _select(summary, "preference")
    if not len(rows):
        return empty_figure(title)
    rows = rows.assign(x=[f"{ROUND_NAMES.get(int(r), f'round {r}')}: vs {str(label).removeprefix('vs ')}"
                          for r, label in zip(rows["round"], rows["label"], strict=True)])
    order = list(dict.fromkeys(rows.sort_values(["round", "label"])["x"]))
    fig = go.Figure()
    for i, (condition, part) in enumerate(rows.groupby("condition", sort=True)):
        part = part.set_index("x").reindex([x for x in order if x in set(part["x"])]).reset_index()
        fig.add_bar(x=part["x"], y=part["estimate"], name=str(condition), error_y=_errors(part),
                    hovertext=_hover(part, "share"), hoverinfo="text+name", marker_color=COLORS[i % len(COLORS)])
    fig.add_hline(y=0.5, line_dash="dot", line_color="#5b6875")
    fig.update_xaxes(categoryorder="array", categoryarray=order)
    fig.update_yaxes(title="share of comparisons won", tickformat=".0%", range=[0, 1])
    return _layout(fig, title, barmode="group")


def change_figure(summary: pd.DataFrame) -> go.Figure:
    """The same members' agreement with the first and the revised winner, and the mean change."""
    title = "First → revised winner<br><sup>the same members' agreement</sup>"
    means, change = _select(summary, "winner_agreement"), _select(summary, "change")
    if not len(change):
        return empty_figure(title, "No member has rated both winners yet")
    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.18,
                        subplot_titles=("mean agreement with the winner", "mean change (revised − first)"))
    for i, (condition, part) in enumerate(means.groupby("condition", sort=True)):
        part = part.sort_values("round")
        fig.add_scatter(x=[ROUND_NAMES.get(int(r)) for r in part["round"]], y=part["estimate"], mode="lines+markers",
                        name=str(condition), error_y=_errors(part), hovertext=_hover(part, "mean"),
                        hoverinfo="text+name", line_color=COLORS[i % len(COLORS)], row=1, col=1)
    shares = _select(summary, "change_share")
    for i, (condition, part) in enumerate(change.groupby("condition", sort=True)):
        improved = shares[(shares["condition"] == condition) & (shares["label"] == "improved")]["estimate"]
        worse = shares[(shares["condition"] == condition) & (shares["label"] == "worse")]["estimate"]
        text = [f"{improved.iloc[0]:.0%} up, {worse.iloc[0]:.0%} down" if len(improved) and len(worse) else ""]
        fig.add_bar(x=[str(condition)], y=part["estimate"], error_y=_errors(part), hovertext=_hover(part, "mean"),
                    hoverinfo="text", text=text, textposition="outside", showlegend=False,
                    marker_color=COLORS[i % len(COLORS)], row=2, col=1)
    fig.update_yaxes(range=[1, 7], title="agreement (1–7)", row=1, col=1)
    fig.add_hline(y=0, line_color="#5b6875", row=2, col=1)
    return _layout(fig, title, height=620)


def time_figure(summary: pd.DataFrame) -> go.Figure:
    """Mean duration of each phase (minutes)."""
    title = "Time per phase"
    rows = _select(summary, "phase_seconds")
    if not len(rows):
        return empty_figure(title, "No group has finished a phase yet")
    order = {p: i for i, p in enumerate(PHASE_NAMES)}
    fig = go.Figure()
    for i, (condition, part) in enumerate(rows.groupby("condition", sort=True)):
        part = part.assign(o=part["label"].map(order).fillna(99)).sort_values("o")
        minutes = part.assign(estimate=part["estimate"] / 60, low=part["low"] / 60, high=part["high"] / 60)
        fig.add_bar(x=[PHASE_NAMES.get(p, p) for p in part["label"]], y=minutes["estimate"], name=str(condition),
                    error_y=_errors(minutes), hovertext=_hover(minutes, "mean"), hoverinfo="text+name",
                    marker_color=COLORS[i % len(COLORS)])
    fig.update_yaxes(title="minutes (mean over groups' phases)")
    return _layout(fig, title, barmode="group")


def dropout_figure(summary: pd.DataFrame) -> go.Figure:
    """Members still answering at each input phase (a funnel), labelled with each phase's dropout rate."""
    title = "Dropout funnel"
    rows = _select(summary, "dropout")
    rows = rows[rows["n"] > 0] if len(rows) else rows
    if not len(rows):
        return empty_figure(title, "No group has finished a phase yet")
    fig = go.Figure()
    for i, (condition, part) in enumerate(rows.groupby("condition", sort=True)):
        part = part.set_index("label").reindex([p for p in INPUT_PHASES if p in set(part["label"])])
        stages, counts, text = ["in a group"], [float(part["n"].iloc[0])], [""]
        for phase, r in part.iterrows():
            stages.append(f"answered {PHASE_NAMES[phase]}")
            counts.append(float(r["n"] * (1 - r["estimate"])))
            text.append(f"dropout {r['estimate']:.0%} [{r['low']:.0%}, {r['high']:.0%}] of {r['n']:.0f}")
        fig.add_funnel(y=stages, x=counts, name=str(condition), text=text, textinfo="value+text",
                       marker_color=COLORS[i % len(COLORS)])
    return _layout(fig, title, height=420)


def loo_figure(loo: pd.DataFrame) -> go.Figure:
    """Leave-one-out: the excluded members' agreement with the winner and dissent, vs the included members'."""
    title = "Leave-one-out<br><sup>members whose opinion was left out vs the others</sup>"
    if not len(loo) or not (loo["role"] == "excluded").any() or loo.loc[loo["role"] == "excluded", "n"].sum() == 0:
        return empty_figure(title, "No leave-one-out group has rated a winner yet")
    fig = make_subplots(rows=3, cols=1, vertical_spacing=0.1, row_heights=[0.38, 0.38, 0.24],
                        subplot_titles=("agreement with the winner (1–7)", "dissent (agreement ≤ threshold)",
                                        "difference: excluded − included"))
    roles = ["excluded", "included", "standard groups"]
    for i, (round_, part) in enumerate(loo.groupby("round", sort=True)):
        name = ROUND_NAMES.get(int(round_), f"round {round_}")
        for row, measure in ((1, "agreement"), (2, "dissent")):
            rows = part[(part["measure"] == measure) & part["role"].isin(roles) & (part["n"] > 0)]
            rows = rows.set_index("role").reindex([r for r in roles if r in set(rows["role"])]).reset_index()
            fig.add_bar(x=rows["role"], y=rows["estimate"], name=name, legendgroup=str(round_),
                        showlegend=row == 1, error_y=_errors(rows), marker_color=COLORS[i % len(COLORS)],
                        hovertext=_hover(rows, "mean" if measure == "agreement" else "share"), hoverinfo="text+name",
                        row=row, col=1)
        diff = part[(part["role"] == "excluded − included") & np.isfinite(part["estimate"].astype(float))]
        if len(diff):
            fig.add_scatter(
                x=diff["estimate"], y=[f"{m} · {name.split()[0]}" for m in diff["measure"]], mode="markers",
                showlegend=False,
                marker=dict(size=10, color=COLORS[i % len(COLORS)]), legendgroup=str(round_),
                error_x=dict(type="data", symmetric=False, array=(diff["high"] - diff["estimate"]).fillna(0),
                             arrayminus=(diff["estimate"] - diff["low"]).fillna(0)),
                hovertext=[f"{e:+.2f} [{lo:+.2f}, {hi:+.2f}]" for e, lo, hi in diff[["estimate", "low", "high"]]
                           .itertuples(index=False)], hoverinfo="text+y", row=3, col=1)
    fig.add_vline(x=0, line_color="#5b6875", row=3, col=1)
    fig.update_yaxes(range=[1, 7], row=1, col=1)
    fig.update_yaxes(tickformat=".0%", range=[0, 1], row=2, col=1)
    fig.update_xaxes(title="agreement points (dissent: share)", row=3, col=1)
    return _layout(fig, title, barmode="group", height=820)


def offline_loo_figure(offline: pd.DataFrame | None, *, note: str | None = None) -> go.Figure:
    """Offline leave-one-out (regenerated statements scored by the reward model): the left-out member's
    predicted agreement and predicted drop vs the other members'."""
    title = ("Offline leave-one-out<br><sup>statements regenerated without each member in turn, "
             "scored by the reward model</sup>")
    if offline is None or not len(offline):
        return empty_figure(title, note or "No offline leave-one-out result yet")
    measures = [m for m in ("predicted agreement", "predicted drop") if (offline["measure"] == m).any()]
    fig = make_subplots(rows=1, cols=len(measures) + 1, horizontal_spacing=0.12,
                        subplot_titles=[*measures, "difference: excluded − included"])
    roles = ["excluded", "included"]
    for col, measure in enumerate(measures, start=1):
        rows = offline[(offline["measure"] == measure) & offline["role"].isin(roles)]
        rows = rows.set_index("role").reindex([r for r in roles if r in set(rows["role"])]).reset_index()
        fig.add_bar(x=rows["role"], y=rows["estimate"], error_y=_errors(rows), showlegend=False,
                    marker_color=[COLORS[0], COLORS[1]][:len(rows)], hovertext=_hover(rows, "mean"),
                    hoverinfo="text", row=1, col=col)
    diff = offline[offline["role"] == "excluded − included"]
    diff = diff[np.isfinite(diff["estimate"].astype(float))]
    if len(diff):
        fig.add_scatter(x=diff["measure"], y=diff["estimate"], mode="markers", showlegend=False,
                        marker=dict(size=11, color=COLORS[2]),
                        error_y=dict(type="data", symmetric=False, array=(diff["high"] - diff["estimate"]).fillna(0),
                                     arrayminus=(diff["estimate"] - diff["low"]).fillna(0)),
                        hovertext=[f"{e:+.2f} [{lo:+.2f}, {hi:+.2f}]" for e, lo, hi in
                                   diff[["estimate", "low", "high"]].itertuples(index=False)],
                        hoverinfo="text+x", row=1, col=len(measures) + 1)
        fig.add_hline(y=0, line_color="#5b6875", row=1, col=len(measures) + 1)
    return _layout(fig, title + (f"<br><sup>{note}</sup>" if note else ""), height=420)


def representation_figure(frame: pd.DataFrame | None, pooled: pd.DataFrame | None, *,
                          note: str | None = None) -> go.Figure:
    """Weight of the minority's opinions in the winner vs the minority's share of the group (y = x: fair)."""
    title = "Minority representation<br><sup>weight in the winner vs share of the group</sup>"
    if frame is None:
        return empty_figure(title, note or "Not computed (it embeds every opinion): open the report with "
                                           "?representation=1")
    rows = frame[frame["minority_members"] > 0] if len(frame) else frame
    if not len(rows):
        return empty_figure(title, "No finished group with a minority yet")
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#5b6875"), name="weight = share")
    rng = np.random.default_rng(0)  # jitter: many groups share the same few share values
    for i, (round_, part) in enumerate(rows.groupby("round", sort=True)):
        jitter = rng.uniform(-0.012, 0.012, len(part))
        fig.add_scatter(x=part["minority_share"] + jitter, y=part["minority_weight"], mode="markers",
                        name=f"{ROUND_NAMES.get(int(round_), round_)} (one dot per group)", opacity=0.55,
                        marker=dict(size=7, color=COLORS[i % len(COLORS)]),
                        hovertext=[f"group {g}" for g in part["group_id"]], hoverinfo="text+x+y")
        if pooled is not None and len(pooled):
            p = pooled[pooled["round"] == round_].set_index("measure")
            if {"minority weight", "minority share"} <= set(p.index):
                w, s = p.loc["minority weight"], p.loc["minority share"]
                fig.add_scatter(x=[s["estimate"]], y=[w["estimate"]], mode="markers",
                                name=f"{ROUND_NAMES.get(int(round_), round_)}: mean weight {w['estimate']:.2f} "
                                     f"vs share {s['estimate']:.2f}",
                                marker=dict(size=15, symbol="diamond", color=COLORS[i % len(COLORS)],
                                            line=dict(width=1.5, color="#1d2733")),
                                error_y=dict(type="data", symmetric=False, array=[w["high"] - w["estimate"]],
                                             arrayminus=[w["estimate"] - w["low"]]),
                                error_x=dict(type="data", symmetric=False, array=[s["high"] - s["estimate"]],
                                             arrayminus=[s["estimate"] - s["low"]]))
    fig.update_xaxes(title="minority's share of the group", range=[0, 0.55])
    fig.update_yaxes(title="weight on minority opinions in the winner", range=[-0.02, 1.02])
    return _layout(fig, title, height=500)
