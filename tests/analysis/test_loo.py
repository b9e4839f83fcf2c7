"""Leave-one-out statistics on hand-computed groups (pure: no database)."""
from __future__ import annotations

import pandas as pd
import pytest

from analysis.loo import DIFFERENCE, offline_loo, online_loo, winner_ratings_frame


def _online_rows() -> list[dict]:
    # Group 1 (leave-one-out): excluded member 10 rates the winner 2, included 11 and 12 rate it 6 and 6.
    # Group 2 (leave-one-out): excluded 20 rates 4; included 21, 22, 23 rate 5, 7, 3.
    # Group 3 (standard): 7, 1.
    rows = []
    for group, condition, ratings in ((1, "leave_one_out", {10: 2, 11: 6, 12: 6}),
                                      (2, "leave_one_out", {20: 4, 21: 5, 22: 7, 23: 3}),
                                      (3, "standard", {30: 7, 31: 1})):
        for pid, agreement in ratings.items():
            rows.append({"group_id": group, "participant_id": pid, "round": 1, "agreement": agreement,
                         "condition": condition, "excluded": condition == "leave_one_out" and pid % 10 == 0})
    return rows


def _cell(result: pd.DataFrame, measure: str, role: str, round_: int = 1) -> pd.Series:
    row = result[(result["measure"] == measure) & (result["role"] == role) & (result["round"] == round_)]
    assert len(row) == 1, (measure, role)
    return row.iloc[0]


def test_online_estimates_match_hand_computation():
    result = online_loo(_online_rows(), n_boot=2000, seed=1)
    assert _cell(result, "agreement", "excluded")["estimate"] == pytest.approx(3.0)  # (2 + 4) / 2
    assert _cell(result, "agreement", "included")["estimate"] == pytest.approx(27 / 5)  # 6+6+5+7+3
    assert _cell(result, "agreement", "standard groups")["estimate"] == pytest.approx(4.0)
    assert _cell(result, "dissent", "excluded")["estimate"] == pytest.approx(0.5)  # 2 <= 3, 4 > 3
    assert _cell(result, "dissent", "included")["estimate"] == pytest.approx(0.2)  # only the 3
    diff = _cell(result, "agreement", DIFFERENCE)
    assert diff["estimate"] == pytest.approx(3.0 - 5.4)
    # Resampling the two leave-one-out groups gives {1,1}: 2 - 6 = -4, {2,2}: 4 - 5 = -1, {1,2}: -2.4
    # (the standard group only changes the counts): the 95% interval spans exactly the two extremes.
    assert diff["low"] == pytest.approx(-4.0)
    assert diff["high"] == pytest.approx(-1.0)
    assert _cell(result, "agreement", "excluded")["n"] == 2
    assert _cell(result, "agreement", "included")["groups"] == 2


def test_online_dissent_threshold_is_a_parameter_and_seed_reproduces():
    strict = online_loo(_online_rows(), dissent_at_most=4, n_boot=200, seed=3)
    assert _cell(strict, "dissent", "excluded")["estimate"] == pytest.approx(1.0)
    assert _cell(strict, "dissent", "included")["estimate"] == pytest.approx(0.2)
    again = online_loo(_online_rows(), dissent_at_most=4, n_boot=200, seed=3)
    pd.testing.assert_frame_equal(strict, again)


def test_online_rejects_missing_columns_and_handles_no_rows():
    with pytest.raises(ValueError, match="excluded"):
        online_loo([{"group_id": 1, "participant_id": 1, "round": 1, "agreement": 3, "condition": "standard"}])
    assert online_loo([]).empty


def test_winner_ratings_frame_marks_the_excluded_member_on_the_winner_only():
    groups = pd.DataFrame({"group_id": [1, 2], "condition": ["leave_one_out", "standard"],
                           "excluded_participant_id": [10, None], "question_id": [1, 1], "phase": ["done"] * 2,
                           "outcome": ["completed"] * 2, "winner_round1_id": [100, 200],
                           "winner_round2_id": [None, None]})
    ratings = pd.DataFrame({"group_id": [1, 1, 1, 1, 2], "participant_id": [10, 10, 11, 11, 20],
                            "candidate_id": [100, 101, 100, 101, 200], "round": [1] * 5,
                            "agreement": [2, 7, 6, 1, 5], "quality": [4] * 5, "rank": [1, 2, 1, 2, 1]})
    frame = winner_ratings_frame(ratings, groups).sort_values("participant_id")
    assert frame["agreement"].tolist() == [2, 6, 5]  # the non-winner ratings are gone
    assert frame["excluded"].tolist() == [True, False, False]


def _offline_rows(with_baseline: bool = True) -> list[dict]:
    # One group of three; baseline 5, 5, 5. Leaving member 1 out: 1 -> 3, 2 -> 5, 3 -> 4.5.
    # Leaving member 2 out: 1 -> 5, 2 -> 4, 3 -> 5.  Leaving member 3 out: 1 -> 4, 2 -> 5, 3 -> 4.
    rows = [{"group_id": 7, "left_out_id": None, "member_id": m, "predicted_agreement": 5.0} for m in (1, 2, 3)]
    table = {1: {1: 3.0, 2: 5.0, 3: 4.5}, 2: {1: 5.0, 2: 4.0, 3: 5.0}, 3: {1: 4.0, 2: 5.0, 3: 4.0}}
    rows += [{"group_id": 7, "left_out_id": j, "member_id": m, "predicted_agreement": v}
             for j, preds in table.items() for m, v in preds.items()]
    return rows if with_baseline else rows[3:]


def test_offline_drop_of_the_left_out_member_vs_the_others():
    result = offline_loo(_offline_rows(), n_boot=100, seed=0)
    # Left-out members' predictions: 3, 4, 4 -> mean 11/3; drops 2, 1, 1 -> 4/3.
    # Others: 5, 4.5, 5, 5, 4, 5 -> 28.5/6 = 4.75; drops 0, .5, 0, 0, 1, 0 -> 1.5/6 = 0.25.
    assert _cell(result, "predicted agreement", "excluded", 0)["estimate"] == pytest.approx(11 / 3)
    assert _cell(result, "predicted agreement", "included", 0)["estimate"] == pytest.approx(4.75)
    assert _cell(result, "predicted drop", "excluded", 0)["estimate"] == pytest.approx(4 / 3)
    assert _cell(result, "predicted drop", "included", 0)["estimate"] == pytest.approx(0.25)
    diff = _cell(result, "predicted drop", DIFFERENCE, 0)
    assert diff["estimate"] == pytest.approx(4 / 3 - 0.25)
    # A single group: every resample is that group, so the interval collapses onto the estimate.
    assert diff["low"] == pytest.approx(diff["estimate"]) and diff["high"] == pytest.approx(diff["estimate"])


def test_offline_without_baseline_reports_levels_only_and_rejects_bad_input():
    result = offline_loo(_offline_rows(with_baseline=False), n_boot=50)
    assert set(result["measure"]) == {"predicted agreement"}
    assert _cell(result, "predicted agreement", DIFFERENCE, 0)["estimate"] == pytest.approx(11 / 3 - 4.75)
    with pytest.raises(ValueError, match="member_id"):
        offline_loo([{"group_id": 1, "left_out_id": 1, "predicted_agreement": 3.0}])
    bad = _offline_rows()
    bad[4]["predicted_agreement"] = float("nan")
    with pytest.raises(ValueError, match="missing"):
        offline_loo(bad)
