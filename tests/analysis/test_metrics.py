"""Study metrics and the group bootstrap on a hand-computed two-group study (pure: no database)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.metrics import StudyData, cluster_bootstrap, metric_table, study_metrics, summarize


def two_group_study() -> StudyData:
    """Group 1 (members 1-3) finished both rounds, member 3 skipped the critique and the final rating;
    group 2 (members 4, 5) has rated round 1 and is in its critique phase."""
    groups = pd.DataFrame({
        "group_id": [1, 2], "condition": ["standard", "standard"], "excluded_participant_id": [None, None],
        "question_id": [9, 9], "phase": ["done", "critique"], "outcome": ["completed", ""],
        "winner_round1_id": [101, 111], "winner_round2_id": [201, None]})
    members = pd.DataFrame({"group_id": [1, 1, 1, 2, 2], "participant_id": [1, 2, 3, 4, 5],
                            "status": ["completed", "completed", "dropped", "in_group", "in_group"]})
    rows = [  # group, member, candidate, round, agreement, quality, rank
        (1, 1, 101, 1, 6, 5, 1), (1, 1, 102, 1, 3, 4, 2),
        (1, 2, 101, 1, 5, 5, 2), (1, 2, 102, 1, 6, 6, 1),
        (1, 3, 101, 1, 2, 3, 1), (1, 3, 102, 1, 1, 2, 2),
        (2, 4, 111, 1, 1, 1, 2), (2, 4, 112, 1, 7, 7, 1),
        (2, 5, 111, 1, 2, 2, 2), (2, 5, 112, 1, 4, 4, 1),
        (1, 1, 201, 2, 7, 6, 1), (1, 1, 202, 2, 5, 5, 2),
        (1, 2, 201, 2, 4, 4, 1), (1, 2, 202, 2, 3, 3, 2),
    ]
    ratings = pd.DataFrame(rows, columns=["group_id", "participant_id", "candidate_id", "round", "agreement",
                                          "quality", "rank"])
    submissions = pd.DataFrame(
        [(1, m, "opinion") for m in (1, 2, 3)] + [(1, m, "rating") for m in (1, 2, 3)]
        + [(1, m, "critique") for m in (1, 2)] + [(1, m, "final_rating") for m in (1, 2)]
        + [(2, m, p) for m in (4, 5) for p in ("opinion", "rating")],
        columns=["group_id", "participant_id", "phase"])
    phase_times = pd.DataFrame([(1, "opinion", 100.0), (1, "rating", 200.0), (1, "critique", 50.0),
                                (1, "final_rating", 80.0), (2, "opinion", 120.0), (2, "rating", 300.0)],
                               columns=["group_id", "phase", "seconds"])
    return StudyData(title="two groups", groups=groups, members=members, ratings=ratings, submissions=submissions,
                     phase_times=phase_times)


def row(summary: pd.DataFrame, metric: str, label: str, round_: int) -> pd.Series:
    hit = summary[(summary["metric"] == metric) & (summary["label"] == label) & (summary["round"] == round_)]
    assert len(hit) == 1, (metric, label, round_)
    return hit.iloc[0]


def test_endorsement_and_its_group_bootstrap_by_hand():
    summary = study_metrics(two_group_study(), n_boot=4000, seed=7)
    endorsement = row(summary, "endorsement", "winner", 1)
    # Winner 101: group 1 rates 6, 5, 2 (two of three >= 5); winner 111: group 2 rates 1, 2 (none).
    assert endorsement["estimate"] == pytest.approx(2 / 5)
    assert endorsement["n"] == 5 and endorsement["groups"] == 2
    # Resampling two groups gives {1,1}: 4/6, {2,2}: 0/4, or one of each: 2/5 (probability 1/2).
    assert endorsement["low"] == pytest.approx(0.0)
    assert endorsement["high"] == pytest.approx(2 / 3)
    draws = cluster_bootstrap(np.array([2.0, 0.0]), np.array([3.0, 2.0]), n_boot=4000, seed=7).draws[:, 0]
    assert set(np.round(draws, 9)) <= {0.0, 0.4, round(2 / 3, 9)}
    assert np.mean(np.isclose(draws, 0.4)) == pytest.approx(0.5, abs=0.03)
    assert np.mean(np.isclose(draws, 0.0)) == pytest.approx(0.25, abs=0.03)


def test_the_other_metrics_by_hand():
    summary = study_metrics(two_group_study(), n_boot=500, seed=0)
    # Round 1 agreement ratings: 6,3,5,6,2,1 and 1,7,2,4: two of ten are 1.
    assert row(summary, "agreement", "1", 1)["estimate"] == pytest.approx(0.2)
    assert row(summary, "quality", "5", 1)["estimate"] == pytest.approx(0.2)  # 5, 5 of ten
    # Head-to-head: group 1 ranked the winner above the other candidate 2 of 3 times, group 2 0 of 2.
    assert row(summary, "preference", "other candidates", 1)["estimate"] == pytest.approx(0.4)
    assert row(summary, "preference", "other candidates", 2)["estimate"] == pytest.approx(1.0)
    assert row(summary, "winner_agreement", "winner", 2)["estimate"] == pytest.approx(5.5)
    # Same members, revised minus first winner: 7 - 6 = +1 and 4 - 5 = -1.
    assert row(summary, "change", "revised - first", 2)["estimate"] == pytest.approx(0.0)
    assert row(summary, "change_share", "improved", 2)["estimate"] == pytest.approx(0.5)
    assert row(summary, "phase_seconds", "opinion", 0)["estimate"] == pytest.approx(110.0)
    assert row(summary, "phase_seconds", "critique", 0)["estimate"] == pytest.approx(50.0)
    # Dropout: nobody in opinion or rating; member 3 of the 3 who rated skipped the critique (group 2 has
    # not finished its critique, so it does not count); both critics rated the revision.
    assert row(summary, "dropout", "opinion", 0)["estimate"] == pytest.approx(0.0)
    assert row(summary, "dropout", "critique", 0)["estimate"] == pytest.approx(1 / 3)
    assert row(summary, "dropout", "critique", 0)["n"] == 3
    assert row(summary, "dropout", "final_rating", 0)["estimate"] == pytest.approx(0.0)
    assert (summary["low"] <= summary["estimate"] + 1e-12).all()
    assert (summary["estimate"] <= summary["high"] + 1e-12).all()


def test_bootstrap_properties():
    rng = np.random.default_rng(0)
    den = rng.integers(1, 6, size=(300, 3)).astype(float)
    num = rng.binomial(den.astype(int), [0.2, 0.5, 0.8]).astype(float)
    boot = cluster_bootstrap(num, den, n_boot=800, seed=11)
    assert np.allclose(boot.estimate, num.sum(0) / den.sum(0))
    low, high = boot.interval()
    assert (low < boot.estimate).all() and (boot.estimate < high).all()
    assert (high - low < 0.15).all()  # 300 groups: a tight interval
    again = cluster_bootstrap(num, den, n_boot=800, seed=11)
    assert np.array_equal(boot.draws, again.draws)
    assert not np.array_equal(boot.draws, cluster_bootstrap(num, den, n_boot=800, seed=12).draws)
    estimate, lo, hi = boot.contrast(2, 0)
    assert estimate == pytest.approx(boot.estimate[2] - boot.estimate[0]) and lo < estimate < hi
    single = cluster_bootstrap(np.array([[3.0]]), np.array([[4.0]]), n_boot=50)
    assert single.interval()[0][0] == pytest.approx(0.75) == single.interval()[1][0]
    empty = cluster_bootstrap(np.zeros((0, 2)), np.zeros((0, 2)))
    assert np.isnan(empty.estimate).all() and np.isnan(empty.interval()[0]).all()
    with pytest.raises(ValueError):
        cluster_bootstrap(np.zeros((3, 2)), np.zeros((3, 1)))


def test_empty_and_partial_studies_do_not_crash():
    assert study_metrics(StudyData(), n_boot=10).empty
    study = two_group_study()
    partial = StudyData(groups=study.groups, members=study.members)  # formed, nothing answered yet
    summary = study_metrics(partial, n_boot=10)
    assert set(summary["metric"]) <= {"dropout"}
    with pytest.raises(ValueError, match="ratings"):
        StudyData(ratings=pd.DataFrame({"group_id": [1]}))


def test_summarize_counts_groups_without_rows_in_the_resampling():
    table = metric_table(two_group_study())
    endorsement = table[table["metric"] == "endorsement"]
    wider = summarize(endorsement, group_ids=[1, 2, 3, 4], n_boot=2000, seed=1)
    # Two more groups without winner ratings: draws where neither real group appears have no ratio.
    assert wider.iloc[0]["estimate"] == pytest.approx(0.4) and wider.iloc[0]["groups"] == 2
    with pytest.raises(ValueError, match="group_ids"):
        summarize(endorsement, group_ids=[1], n_boot=10)


def test_preference_between_conditions_by_hand():
    from core.metrics import condition_preference

    data = two_group_study()
    data.groups.loc[data.groups["group_id"] == 2, "condition"] = "leave_one_out"
    table = condition_preference(data, n_boot=200, seed=1)
    # round 1 winners: standard members agree 6, 5, 2; leave-one-out members 1, 2. Of the 3 x 2 pairs the
    # standard member agrees more in 5 and ties in 1 (2 vs 2): 5.5 / 6. Round 2 has only the standard group.
    assert set(table["round"]) == {1}
    rows = table.set_index(["condition", "label"])
    forward, backward = rows.loc[("standard", "vs leave_one_out")], rows.loc[("leave_one_out", "vs standard")]
    assert forward["estimate"] == pytest.approx(5.5 / 6) and backward["estimate"] == pytest.approx(0.5 / 6)
    assert forward["n"] == 6 and forward["groups"] == 2
    assert forward["low"] <= forward["estimate"] <= forward["high"]
    # and it is part of the study's metrics, beside the within-group comparisons
    summary = study_metrics(data, n_boot=50)
    labels = set(summary.loc[summary["metric"] == "preference", "label"])
    assert {"other candidates", "vs leave_one_out", "vs standard"} <= labels
    # one condition only: nothing to compare
    assert condition_preference(two_group_study(), n_boot=10).empty
