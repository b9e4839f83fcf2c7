"""Leave-one-out sensitivity (Bakker et al. 2022): do members whose opinion the model never saw dissent more?

Online: in the study's leave-one-out condition one member's opinion is silently left out of the prompt
(``Group.excluded_participant``); everyone rates the same winner. ``online_loo`` compares the excluded
members' agreement with the winner and their dissent rate (agreement <= threshold) with the included
members' (and with members of standard groups, as a reference).

Offline: for finished groups, statements are regenerated once per member with that member's opinion left
out, and a reward model predicts every member's agreement with each; ``offline_loo`` aggregates those
predictions into the predicted drop of the left-out member vs the others.

Both give group-bootstrap intervals (``core.metrics.cluster_bootstrap``); differences are paired
within the same resampled groups. Django-free: plain frames in, plain frames out.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from core.metrics import cluster_bootstrap, ratings_with_context

DISSENT_AT_MOST = 3  # "somewhat disagree" or less on the 7-point scale
RESULT_COLUMNS = ["round", "measure", "role", "estimate", "low", "high", "n", "groups"]
EXCLUDED, INCLUDED, STANDARD = "excluded", "included", "standard groups"
DIFFERENCE = "excluded − included"


def _as_frame(rows, columns: list[str], what: str) -> pd.DataFrame:
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if not len(df):
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    missing = set(columns) - set(df.columns)
    if missing:
        raise ValueError(f"{what} lacks columns {sorted(missing)} (needs {columns})")
    return df


def _per_group(df: pd.DataFrame, cells: list[tuple[str, np.ndarray, np.ndarray]]) -> tuple:
    """(groups x K) numerators and denominators: per cell, a row mask and the values to average."""
    groups = pd.Index(pd.unique(df["group_id"]))
    rows = groups.get_indexer(df["group_id"])
    num = np.zeros((len(groups), len(cells)))
    den = np.zeros((len(groups), len(cells)))
    for k, (_, mask, values) in enumerate(cells):
        num[:, k] = np.bincount(rows[mask], weights=values[mask], minlength=len(groups))
        den[:, k] = np.bincount(rows[mask], minlength=len(groups))
    return num, den


def _rows(boot, den, cells, round_, contrasts) -> list[dict]:
    low, high = boot.interval()
    out = []
    for k, (role_measure, _, _) in enumerate(cells):
        role, measure = role_measure.split("|")
        out.append({"round": round_, "measure": measure, "role": role, "estimate": float(boot.estimate[k]),
                    "low": float(low[k]), "high": float(high[k]), "n": int(den[:, k].sum()),
                    "groups": int((den[:, k] > 0).sum())})
    for measure, (i, j) in contrasts.items():
        estimate, lo, hi = boot.contrast(i, j)
        both = (den[:, i] > 0) & (den[:, j] > 0)
        out.append({"round": round_, "measure": measure, "role": DIFFERENCE, "estimate": estimate, "low": lo,
                    "high": hi, "n": int(den[:, i].sum() + den[:, j].sum()), "groups": int(both.sum())})
    return out


def online_loo(winner_ratings: pd.DataFrame | Iterable[Mapping], *, dissent_at_most: int = DISSENT_AT_MOST,
               n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Excluded vs included members' agreement with their group's winner, per round.

    ``winner_ratings``: one row per member and round with columns ``group_id``, ``participant_id``,
    ``round``, ``agreement`` (1–7 with the winner of that round), ``condition`` ('standard' or
    'leave_one_out') and ``excluded`` (True for the member left out of the prompt).

    Returns rows (``RESULT_COLUMNS``) with measure 'agreement' (mean) and 'dissent' (share with
    agreement <= ``dissent_at_most``) for roles excluded, included, standard groups, and the difference
    excluded − included; intervals resample groups.
    """
    df = _as_frame(winner_ratings, ["group_id", "participant_id", "round", "agreement", "condition", "excluded"],
                   "winner_ratings")
    df = df[df["agreement"].notna()]
    out: list[dict] = []
    for round_, part in df.groupby("round", sort=True):
        agreement = part["agreement"].to_numpy(dtype=float)
        loo = (part["condition"] == "leave_one_out").to_numpy()
        excluded = part["excluded"].fillna(False).to_numpy(dtype=bool)
        standard = (part["condition"] == "standard").to_numpy()  # not e.g. a leave-one-out group that did not hold
        roles = {EXCLUDED: loo & excluded, INCLUDED: loo & ~excluded, STANDARD: standard}
        cells = []
        for measure, values in (("agreement", agreement), ("dissent", (agreement <= dissent_at_most).astype(float))):
            cells += [(f"{role}|{measure}", mask, values) for role, mask in roles.items()]
        num, den = _per_group(part, cells)
        boot = cluster_bootstrap(num, den, n_boot=n_boot, seed=seed, level=level)
        out += _rows(boot, den, cells, int(round_), {"agreement": (0, 1), "dissent": (3, 4)})
    return pd.DataFrame(out, columns=RESULT_COLUMNS)


def offline_loo(predictions: pd.DataFrame | Iterable[Mapping], *, n_boot: int = 1000, seed: int = 0,
                level: float = 0.95) -> pd.DataFrame:
    """Predicted effect of leaving one member's opinion out, aggregated over groups.

    ``predictions``: one row per (group, statement, member) with columns
      ``group_id``,
      ``left_out_id``: the member whose opinion was left out when writing the statement; missing
          (None/NaN) for the statement written from every opinion (the baseline),
      ``member_id``: the member whose agreement is predicted,
      ``predicted_agreement``: the reward model's prediction (any scale, e.g. 1–7).
    Each group needs, per left-out member, predictions for every member; baseline rows are optional.

    Returns rows (``RESULT_COLUMNS``, round 0) for measure 'predicted agreement' (with the statement
    that left someone out: the left-out member vs the others) and, for groups with a baseline, measure
    'predicted drop' (baseline minus leave-one-out prediction, for the left-out member vs the others),
    each with the difference excluded − included. A positive drop difference means the left-out member
    loses more than the others: the statement represents them less.
    """
    df = _as_frame(predictions, ["group_id", "left_out_id", "member_id", "predicted_agreement"], "predictions")
    if df["predicted_agreement"].isna().any():
        raise ValueError("predicted_agreement has missing values")
    df = df.copy()
    baseline = df[df["left_out_id"].isna()][["group_id", "member_id", "predicted_agreement"]]
    if baseline.duplicated(["group_id", "member_id"]).any():
        raise ValueError("more than one baseline prediction for a (group, member)")
    loo = df[df["left_out_id"].notna()].merge(
        baseline.rename(columns={"predicted_agreement": "baseline"}), on=["group_id", "member_id"], how="left")
    if not len(loo):
        return pd.DataFrame(columns=RESULT_COLUMNS)
    excluded = (loo["left_out_id"].to_numpy() == loo["member_id"].to_numpy())
    predicted = loo["predicted_agreement"].to_numpy(dtype=float)
    drop = loo["baseline"].to_numpy(dtype=float) - predicted
    has_baseline = ~np.isnan(drop)
    drop = np.nan_to_num(drop)
    cells = [(f"{EXCLUDED}|predicted agreement", excluded, predicted),
             (f"{INCLUDED}|predicted agreement", ~excluded, predicted),
             (f"{EXCLUDED}|predicted drop", excluded & has_baseline, drop),
             (f"{INCLUDED}|predicted drop", ~excluded & has_baseline, drop)]
    num, den = _per_group(loo, cells)
    boot = cluster_bootstrap(num, den, n_boot=n_boot, seed=seed, level=level)
    contrasts = {"predicted agreement": (0, 1)}
    if has_baseline.any():
        contrasts["predicted drop"] = (2, 3)
    else:
        cells, num, den = cells[:2], num[:, :2], den[:, :2]
        boot = cluster_bootstrap(num, den, n_boot=n_boot, seed=seed, level=level)
    return pd.DataFrame(_rows(boot, den, cells, 0, contrasts), columns=RESULT_COLUMNS)


def winner_ratings_frame(ratings: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """The input of ``online_loo`` from ``StudyData``-style ratings and groups frames."""
    rated = ratings_with_context(ratings, groups)
    rated = rated[rated["is_winner"]].merge(groups[["group_id", "excluded_participant_id"]], on="group_id")
    rated["excluded"] = rated["participant_id"].to_numpy() == rated["excluded_participant_id"].to_numpy()
    return rated[["group_id", "participant_id", "round", "agreement", "condition", "excluded"]]
