"""Study metrics on plain data (pandas frames), each with a cluster-bootstrap confidence interval.

Members of one group rate the same statements after reading each other, so their answers are not
independent: every interval here resamples whole GROUPS (``cluster_bootstrap``). Every metric is a
ratio of sums over groups (a share or a mean of pooled units), so one table of per-group numerators
and denominators, ``metric_table``, feeds one bootstrap for the whole report: the resampled group
counts form a (draws x groups) matrix and every metric's draws come out of one matrix product.

Django-free: ``analysis.reports.data`` loads a study from the database into ``StudyData``.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

LIKERT = tuple(range(1, 8))
INPUT_PHASES = ("opinion", "rating", "critique", "final_rating")
ENDORSE_AT = 5  # "somewhat agree" or more on the 7-point scale
TABLE_COLUMNS = ["metric", "round", "condition", "label", "group_id", "num", "den"]
SUMMARY_COLUMNS = ["metric", "round", "condition", "label", "estimate", "low", "high", "n", "groups"]


def _frame(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="float64" if c in ("num", "den") else "object") for c in columns})


SCHEMAS: dict[str, list[str]] = {
    "groups": ["group_id", "condition", "excluded_participant_id", "question_id", "phase", "outcome",
               "winner_round1_id", "winner_round2_id"],
    "members": ["group_id", "participant_id", "status"],
    "ratings": ["group_id", "participant_id", "candidate_id", "round", "agreement", "quality", "rank"],
    "submissions": ["group_id", "participant_id", "phase"],
    "phase_times": ["group_id", "phase", "seconds"],
}


# Optional ratings columns: ``source`` of the rated statement ('model', or 'opinion' for a member's opinion
# shown as a comparator; missing means 'model') and ``opinion_author_id`` (whose opinion it is).
OPTIONAL_RATING_COLUMNS = {"source": "model", "opinion_author_id": None}


@dataclass
class StudyData:
    """One study as plain frames (columns in ``SCHEMAS``, ratings optionally ``OPTIONAL_RATING_COLUMNS``);
    any frame may be empty.

    ``submissions``: one row per member and input phase in which they answered (stored-by-timeout
    drafts count: the member was there). ``phase_times``: one row per phase a group has finished,
    with its duration in seconds.
    """

    title: str = ""
    groups: pd.DataFrame = field(default_factory=lambda: _frame(SCHEMAS["groups"]))
    members: pd.DataFrame = field(default_factory=lambda: _frame(SCHEMAS["members"]))
    ratings: pd.DataFrame = field(default_factory=lambda: _frame(SCHEMAS["ratings"]))
    submissions: pd.DataFrame = field(default_factory=lambda: _frame(SCHEMAS["submissions"]))
    phase_times: pd.DataFrame = field(default_factory=lambda: _frame(SCHEMAS["phase_times"]))

    def __post_init__(self) -> None:
        for name, columns in SCHEMAS.items():
            missing = set(columns) - set(getattr(self, name).columns)
            if missing:
                raise ValueError(f"StudyData.{name} lacks columns {sorted(missing)}")


# --- the bootstrap --------------------------------------------------------------------------------------
def resample_counts(n_groups: int, n_boot: int, seed: int, chunk: int = 100) -> Iterator[np.ndarray]:
    """Chunks of a (n_boot x n_groups) matrix: how often each group appears in each bootstrap sample."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        dtype = np.int32 if rows * n_groups < 2**31 else np.int64  # int32 draws are about twice as fast
        picks = rng.integers(0, n_groups, size=(rows, n_groups), dtype=dtype)
        picks += (np.arange(rows, dtype=dtype) * n_groups)[:, None]
        yield np.bincount(picks.ravel(), minlength=rows * n_groups).reshape(rows, n_groups).astype(np.float64)


@dataclass(frozen=True)
class Bootstrap:
    """Point estimates and bootstrap draws of K ratios ``sum(num) / sum(den)`` over groups."""

    estimate: np.ndarray  # (K,)
    draws: np.ndarray  # (n_boot, K); NaN where a draw had no denominator
    level: float

    def interval(self, draws: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Percentile interval of each column (of ``draws``, default: the ratios themselves)."""
        draws = self.draws if draws is None else draws
        if draws.shape[0] == 0 or draws.shape[1] == 0:
            nan = np.full(draws.shape[1], np.nan)
            return nan, nan.copy()
        tail = (1 - self.level) / 2
        with warnings.catch_warnings():  # an all-NaN column (no data in any draw) gives NaN, quietly
            warnings.simplefilter("ignore", RuntimeWarning)
            low, high = np.nanquantile(draws, [tail, 1 - tail], axis=0)
        return low, high

    def contrast(self, i: int, j: int) -> tuple[float, float, float]:
        """Estimate and interval of ratio i minus ratio j (e.g. excluded minus included members)."""
        low, high = self.interval(self.draws[:, [i]] - self.draws[:, [j]])
        return float(self.estimate[i] - self.estimate[j]), float(low[0]), float(high[0])


def cluster_bootstrap(num: np.ndarray, den: np.ndarray, *, n_boot: int = 1000, seed: int = 0,
                      level: float = 0.95) -> Bootstrap:
    """Group (cluster) bootstrap of the ratios ``num[:, k].sum() / den[:, k].sum()``.

    ``num`` and ``den`` are (groups x K): per group, the numerator and denominator of each of K
    metrics (e.g. members who endorsed the winner / members who rated it). Each draw resamples the
    groups with replacement (seeded), so members of one group stay together; all K metrics share the
    draws, which makes differences between them (``Bootstrap.contrast``) paired.
    """
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    if num.ndim == 1:
        num, den = num[:, None], den[:, None]
    if num.shape != den.shape:
        raise ValueError(f"numerators {num.shape} and denominators {den.shape} differ in shape")
    if not 0 < level < 1:
        raise ValueError("level must be between 0 and 1")
    n_groups, k = num.shape
    with np.errstate(all="ignore"):
        estimate = num.sum(axis=0) / den.sum(axis=0)
    if n_groups == 0 or n_boot <= 0:
        return Bootstrap(estimate=np.full(k, np.nan) if n_groups == 0 else estimate,
                         draws=np.zeros((0, k)), level=level)
    both = np.hstack([num, den])
    sums = np.vstack([counts @ both for counts in resample_counts(n_groups, n_boot, seed)])
    with np.errstate(all="ignore"):
        draws = sums[:, :k] / sums[:, k:]
    draws[~np.isfinite(draws)] = np.nan
    return Bootstrap(estimate=estimate, draws=draws, level=level)


# --- per-group numerators and denominators of each metric -----------------------------------------------
def _table(df: pd.DataFrame, metric: str, label, num, den=1.0, round_: int | None = None) -> pd.DataFrame:
    """Rows of ``TABLE_COLUMNS`` for ``df``'s rows; ``round_`` None: the rows' own round."""
    out = pd.DataFrame({
        "metric": metric,
        "round": df["round"].astype(int).to_numpy() if round_ is None else round_,
        "condition": df["condition"].to_numpy(),
        "label": label if isinstance(label, str) else np.asarray(label, dtype=object),
        "group_id": df["group_id"].to_numpy(),
        "num": np.asarray(num, dtype=np.float64),
        "den": np.asarray(den, dtype=np.float64) if not np.isscalar(den) else float(den),
    }, index=df.index)
    return out[TABLE_COLUMNS] if len(out) else _frame(TABLE_COLUMNS)


def ratings_with_context(ratings: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """Ratings with their group's condition and whether the rated candidate won its round (and the optional
    columns filled in: statements without a ``source`` are the model's)."""
    groups = groups[["group_id", "condition", "winner_round1_id", "winner_round2_id"]]
    df = ratings.merge(groups, on="group_id", how="inner")
    for column, default in OPTIONAL_RATING_COLUMNS.items():
        if column not in df.columns:
            df[column] = default
    df["source"] = df["source"].fillna("model")
    winner = np.where(df["round"].astype(int) == 1, df["winner_round1_id"], df["winner_round2_id"])
    df["is_winner"] = pd.notna(winner) & (df["candidate_id"].to_numpy() == winner)
    return df


def factorize_keys(frame: pd.DataFrame, keys: Sequence[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """(cell index per row, one row per distinct key combination): a fast groupby-ngroup over ``keys``.

    Factorises each column on its own and combines the codes into one integer, which avoids building tuples
    (a MultiIndex or a groupby over object columns costs ~10x more on 100k rows)."""
    code = np.zeros(len(frame), dtype=np.int64)
    uniques = []
    for key in keys:
        values, unique = pd.factorize(frame[key], use_na_sentinel=False)
        code = code * max(len(unique), 1) + values
        uniques.append(unique)
    cell_codes, cell = np.unique(code, return_inverse=True)
    decoded, rest = {}, cell_codes
    for key, unique in zip(reversed(keys), reversed(uniques), strict=True):
        rest, index = np.divmod(rest, max(len(unique), 1))
        decoded[key] = np.asarray(unique, dtype=object)[index]
    return cell.reshape(-1), pd.DataFrame({key: decoded[key] for key in keys})


def distribution_table(rated: pd.DataFrame) -> pd.DataFrame:
    """Share of ratings at each Likert level, for agreement and quality (all model statements; members'
    opinions shown as comparators are left out).

    Counted per (group, round) first, so the table has one row per group, round and level, not per rating."""
    parts = []
    rated = rated[rated["source"] == "model"]
    for measure in ("agreement", "quality"):
        df = rated[rated[measure].notna()]
        if not len(df):
            continue
        cell, cells = factorize_keys(df, ["group_id", "round", "condition"])
        levels = df[measure].to_numpy(dtype=np.int64) - 1
        counts = np.bincount(cell * len(LIKERT) + levels, minlength=len(cells) * len(LIKERT))
        counts = counts.reshape(len(cells), len(LIKERT)).astype(np.float64)
        wide = cells.loc[cells.index.repeat(len(LIKERT))].reset_index(drop=True)
        parts.append(pd.DataFrame({
            "metric": measure, "round": wide["round"].astype(int).to_numpy(), "condition": wide["condition"].to_numpy(),
            "label": np.tile(np.array([str(v) for v in LIKERT], dtype=object), len(cells)),
            "group_id": wide["group_id"].to_numpy(), "num": counts.ravel(),
            "den": np.repeat(counts.sum(axis=1), len(LIKERT))})[TABLE_COLUMNS])
    return pd.concat(parts, ignore_index=True) if parts else _frame(TABLE_COLUMNS)


def endorsement_table(rated: pd.DataFrame) -> pd.DataFrame:
    """Members rating the winner's agreement >= 5, and their mean agreement with it."""
    df = rated[rated["is_winner"] & rated["agreement"].notna()]
    agreement = df["agreement"].astype(float).to_numpy()
    return pd.concat([_table(df, "endorsement", "winner", agreement >= ENDORSE_AT),
                      _table(df, "winner_agreement", "winner", agreement)], ignore_index=True)


PREFERENCE_OTHERS = "other candidates"
PREFERENCE_OWN_OPINION = "own opinion"
PREFERENCE_OTHER_OPINIONS = "other members' opinions"


def preference_table(rated: pd.DataFrame) -> pd.DataFrame:
    """Head-to-head: each member's ranking of the winner against every other ranked statement of the round.

    A comparison counts as won when the member ranked the winner above the comparator. Comparators, as
    labels: the other model statements; and, where the study showed members' opinions as candidates, the
    member's own opinion and the other members' opinions."""
    ranked = rated[rated["rank"].notna()]
    key = ["group_id", "round", "participant_id"]
    winner_rank = ranked.loc[ranked["is_winner"], [*key, "rank"]].rename(columns={"rank": "winner_rank"})
    others = ranked[~ranked["is_winner"]].merge(winner_rank, on=key, how="inner")
    opinion = (others["source"] == "opinion").to_numpy()
    own = opinion & (others["opinion_author_id"].to_numpy() == others["participant_id"].to_numpy())
    labels = np.where(own, PREFERENCE_OWN_OPINION, np.where(opinion, PREFERENCE_OTHER_OPINIONS, PREFERENCE_OTHERS))
    return _table(others, "preference", labels.astype(object),
                  others["winner_rank"].to_numpy() < others["rank"].to_numpy())


def change_table(rated: pd.DataFrame) -> pd.DataFrame:
    """Same member's agreement with the revised winner minus with the first winner."""
    df = rated[rated["is_winner"] & rated["agreement"].notna()]
    wide = df.pivot_table(index=["group_id", "participant_id", "condition"], columns="round",
                          values="agreement", aggfunc="first")
    if 1 not in wide.columns or 2 not in wide.columns:
        return _frame(TABLE_COLUMNS)
    wide = wide.dropna(subset=[1, 2]).reset_index()
    diff = wide[2].to_numpy(dtype=float) - wide[1].to_numpy(dtype=float)
    return pd.concat([_table(wide, "change", "revised - first", diff, round_=2),
                      _table(wide, "change_share", "improved", diff > 0, round_=2),
                      _table(wide, "change_share", "worse", diff < 0, round_=2)], ignore_index=True)


def time_table(data: StudyData) -> pd.DataFrame:
    """Seconds each finished phase took, per group."""
    df = data.phase_times.merge(data.groups[["group_id", "condition"]], on="group_id", how="inner")
    return _table(df, "phase_seconds", df["phase"].astype(str).to_numpy(), df["seconds"].astype(float).to_numpy(),
                  round_=0)


def dropout_table(data: StudyData) -> pd.DataFrame:
    """Share of the members still active before an input phase who did not answer in it.

    Only groups that finished the phase count; "active" means answered in the previous input phase (for
    the opinion phase: every member of the group)."""
    key = ["group_id", "participant_id"]
    finished = data.phase_times[["group_id", "phase"]].drop_duplicates()
    answers = data.submissions[[*key, "phase"]].drop_duplicates()
    members = data.members[key].drop_duplicates().merge(data.groups[["group_id", "condition"]], on="group_id")
    parts, previous = [], None
    for phase in INPUT_PHASES:
        at_risk = members[members["group_id"].isin(finished.loc[finished["phase"] == phase, "group_id"])]
        if previous is not None:
            at_risk = at_risk.merge(answers.loc[answers["phase"] == previous, key], on=key)
        now = answers.loc[answers["phase"] == phase, key].assign(answered=True)
        at_risk = at_risk.merge(now, on=key, how="left")
        parts.append(_table(at_risk, "dropout", phase, at_risk["answered"].isna().to_numpy(), round_=0))
        previous = phase
    return pd.concat(parts, ignore_index=True)


def metric_table(data: StudyData) -> pd.DataFrame:
    """Every metric's per-group numerator and denominator (columns ``TABLE_COLUMNS``)."""
    rated = ratings_with_context(data.ratings, data.groups)
    parts = [distribution_table(rated), endorsement_table(rated), preference_table(rated), change_table(rated),
             time_table(data), dropout_table(data)]
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else _frame(TABLE_COLUMNS)


def summarize(table: pd.DataFrame, *, group_ids: Sequence | None = None, n_boot: int = 1000, seed: int = 0,
              level: float = 0.95) -> pd.DataFrame:
    """Estimate and group-bootstrap interval of every (metric, round, condition, label) in ``table``.

    ``group_ids``: the groups to resample (default: those in the table); groups without any rows still
    count, as the bootstrap's sample size."""
    if not len(table):
        return pd.DataFrame({c: pd.Series(dtype="object") for c in SUMMARY_COLUMNS})
    keys = ["metric", "round", "condition", "label"]
    column, columns = factorize_keys(table, keys)
    columns = columns.astype({"round": int})
    groups = pd.Index(pd.unique(table["group_id"]) if group_ids is None else pd.unique(np.asarray(group_ids)))
    rows = groups.get_indexer(table["group_id"])
    if (rows < 0).any():
        raise ValueError("the table has groups that are not in group_ids")
    k = len(columns)
    flat = rows.astype(np.int64) * k + column
    num = np.bincount(flat, weights=table["num"].to_numpy(float), minlength=len(groups) * k)
    den = np.bincount(flat, weights=table["den"].to_numpy(float), minlength=len(groups) * k)
    num, den = num.reshape(len(groups), k), den.reshape(len(groups), k)
    boot = cluster_bootstrap(num, den, n_boot=n_boot, seed=seed, level=level)
    low, high = boot.interval()
    out = columns.copy()
    out["estimate"], out["low"], out["high"] = boot.estimate, low, high
    out["n"] = den.sum(axis=0)
    out["groups"] = (den > 0).sum(axis=0)
    return out[SUMMARY_COLUMNS]


def condition_preference(data: StudyData, *, n_boot: int = 1000, seed: int = 0,
                         level: float = 0.95) -> pd.DataFrame:
    """Head-to-head between conditions (groups are in one condition each, so no member sees both): for each
    ordered pair of conditions (A, B) and round, the probability that a member in A agrees more with their
    group's winner than a member in B with theirs, ties counting half (the common-language effect size of
    agreement with the winner). 0.5 = no difference.

    Rows (``SUMMARY_COLUMNS``): metric 'preference', condition A, label 'vs condition B'. The interval comes
    from the same group resampling as every other metric (``resample_counts`` over the study's groups, same
    seed): per draw, the resampled groups' histograms of agreement with the winner per condition."""
    rated = ratings_with_context(data.ratings, data.groups)
    df = rated[rated["is_winner"] & rated["agreement"].notna()]
    columns = {c: pd.Series(dtype="object") for c in SUMMARY_COLUMNS}
    if not len(df) or df["condition"].nunique() < 2:
        return pd.DataFrame(columns)
    group_ids = pd.Index(pd.unique(data.groups["group_id"].to_numpy()))
    levels = len(LIKERT)
    # beats[i, j]: a at level i against b at level j, 1 if a > b, 1/2 if equal
    beats = np.tril(np.ones((levels, levels)), -1) + 0.5 * np.eye(levels)
    counts = (np.vstack(list(resample_counts(len(group_ids), n_boot, seed))) if n_boot > 0
              else np.zeros((0, len(group_ids))))
    out = []
    for round_, part in df.groupby("round", sort=True):
        conditions = sorted(part["condition"].astype(str).unique())
        hist = {}
        for condition in conditions:
            rows = part[part["condition"].astype(str) == condition]
            flat = group_ids.get_indexer(rows["group_id"]) * levels + rows["agreement"].to_numpy(dtype=np.int64) - 1
            hist[condition] = np.bincount(flat, minlength=len(group_ids) * levels).reshape(len(group_ids), levels)
        draws = {c: counts @ h for c, h in hist.items()}
        for a in conditions:
            for b in conditions:
                if a == b:
                    continue
                ha, hb = hist[a].sum(axis=0), hist[b].sum(axis=0)
                pairs = ha.sum() * hb.sum()
                estimate = float(ha @ beats @ hb / pairs) if pairs else np.nan
                da, db = draws[a], draws[b]
                with np.errstate(all="ignore"):
                    boot = np.einsum("di,ij,dj->d", da, beats, db) / (da.sum(axis=1) * db.sum(axis=1))
                boot = boot[np.isfinite(boot)]
                tail = (1 - level) / 2
                low, high = (np.quantile(boot, [tail, 1 - tail]) if len(boot) else (np.nan, np.nan))
                groups_in = part.loc[part["condition"].astype(str).isin([a, b]), "group_id"].nunique()
                out.append({"metric": "preference", "round": int(round_), "condition": a, "label": f"vs {b}",
                            "estimate": estimate, "low": float(low), "high": float(high), "n": float(pairs),
                            "groups": int(groups_in)})
    return pd.DataFrame(out, columns=SUMMARY_COLUMNS)


def study_metrics(data: StudyData, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """All metrics of a study with group-bootstrap intervals (one resampling shared by all of them), and the
    head-to-head preference between conditions."""
    summary = summarize(metric_table(data), group_ids=data.groups["group_id"].to_numpy(), n_boot=n_boot, seed=seed,
                        level=level)
    between = condition_preference(data, n_boot=n_boot, seed=seed, level=level)
    return pd.concat([summary, between], ignore_index=True) if len(between) else summary
