"""The analyst report and the exports compare study arms with the report's own group bootstrap."""
from __future__ import annotations

import pandas as pd
import pytest

from analysis.exports import study_tables, wide_table
from analysis.reports.build import arm_metrics, build_report
from analysis.reports.data import load_study
from core.metrics import study_metrics
from deliberation.models import Group

from .simulated import build_simulated_study

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two_arm_study():
    return build_simulated_study(slug="arms", groups=4, group_size=3, seed=4, leave_one_out_share=0.0,
                                 dropout_share=0.0, arms=("control", "treatment"))


def test_report_compares_arms_with_the_same_group_bootstrap(two_arm_study):
    data = load_study(two_arm_study)
    arm_of = dict(Group.objects.filter(study=two_arm_study).values_list("id", "arm__name"))
    assert dict(zip(data.groups["group_id"], data.groups["arm"], strict=True)) == arm_of
    assert sorted(arm_of.values()) == ["control", "control", "treatment", "treatment"]  # blocks of two

    arms = arm_metrics(data, n_boot=200, seed=1)
    endorsement = arms[(arms["metric"] == "endorsement") & (arms["round"] == 1)].set_index("condition")
    assert set(endorsement.index) == {"control", "treatment"}
    assert (endorsement["groups"] == 2).all()  # each arm's own groups
    # The same estimator as the rest of the report, on the arm's groups alone.
    for name in ("control", "treatment"):
        ids = [gid for gid, arm in arm_of.items() if arm == name]
        alone = data.groups[data.groups["group_id"].isin(ids)]
        one = study_metrics(type(data)(title="", groups=alone, members=data.members, ratings=data.ratings[
            data.ratings["group_id"].isin(ids)], submissions=data.submissions, phase_times=data.phase_times),
            n_boot=10, seed=1)
        estimate = one[(one["metric"] == "endorsement") & (one["round"] == 1)]["estimate"].iloc[0]
        assert endorsement.loc[name, "estimate"] == pytest.approx(estimate)
        assert endorsement.loc[name, "low"] <= endorsement.loc[name, "estimate"] <= endorsement.loc[name, "high"]
    assert arms.equals(arm_metrics(data, n_boot=200, seed=1))  # reproducible from the seed
    head_to_head = arms[arms["label"].astype(str).str.startswith("vs ")]
    assert set(head_to_head["condition"]) == {"control", "treatment"}  # arms compared head to head

    report = build_report(data, n_boot=50)
    assert report.arms is not None and report.counts["arm control"] == 2 and report.counts["arm treatment"] == 2
    figure = next(f.figure for f in report.figures if f.key == "arms")
    assert sorted(trace.name for trace in figure.data) == ["control", "treatment"]


def test_one_arm_has_nothing_to_compare():
    study = build_simulated_study(slug="one", groups=2, group_size=3, seed=1, leave_one_out_share=0.0,
                                  dropout_share=0.0)
    data = load_study(study)
    assert set(data.groups["arm"]) == {"default"} and arm_metrics(data) is None
    figure = next(f.figure for f in build_report(data, n_boot=20).figures if f.key == "arms")
    assert "One arm only" in str(figure.layout.annotations[0].text)


def test_exports_carry_the_arm_and_its_settings(two_arm_study):
    tables = study_tables(two_arm_study)
    arms = tables["arms"]
    assert sorted(arms["name"]) == ["control", "treatment"] and "generation_backend" in arms.columns
    groups = tables["groups"]
    names = dict(zip(arms["id"], arms["name"], strict=True))
    assert all(names[a] == n for a, n in zip(groups["arm_id"], groups["arm"], strict=True))
    wide = wide_table(tables)
    in_group = wide[pd.notna(wide["group_id"])]
    by_group = dict(zip(groups["id"], groups["arm"], strict=True))
    assert all(by_group[g] == a for g, a in zip(in_group["group_id"], in_group["arm"], strict=True))
