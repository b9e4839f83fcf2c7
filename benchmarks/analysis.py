"""Benchmark: building the analyst report from plain data, and the leave-one-out analyses.

    .venv/bin/python benchmarks/analysis.py [--ratings 100000 200000] [--loo-groups 1000] [--repeats 3]

Synthetic but study-shaped data (``synthetic_study``): groups of 4–5 members, 4 candidates per round,
two rounds (first and revised winner), half the groups in the leave-one-out condition, about one member
in ten dropping out at some phase, ratings that depend on each member's side and the candidate, timed
phases. Sizes are given in ratings; the group count follows (about 33 ratings per group, dropouts included).

1. The whole report (target <= 3 s for 100k ratings): every metric with 1,000 group-bootstrap
   resamples, the online leave-one-out comparison, every figure and the standalone HTML with
   plotly.js inlined. Minority representation gets precomputed 384-d vectors (embedding the texts is the
   reward model's cost, benchmarked in benchmarks/reward.py); its fits are timed separately.
2. Leave-one-out for 1,000 groups: online (members' ratings of the winner) and offline (a predicted
   agreement per group x left-out member x member, with the full-group baseline).

Writes benchmarks/results/analysis.json and analysis.md and prints the table. Timings are medians.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.loo import offline_loo, online_loo, winner_ratings_frame  # noqa: E402
from analysis.reports.build import build_report  # noqa: E402
from analysis.reports.render import render_standalone  # noqa: E402
from analysis.representation import group_representation  # noqa: E402
from core.metrics import StudyData  # noqa: E402

TARGET_S = 3.0
CANDIDATES = 4
PHASES = ("opinion", "generating", "rating", "critique", "revising", "final_rating")
PHASE_MEAN_SECONDS = {"opinion": 180, "generating": 25, "rating": 150, "critique": 90, "revising": 25,
                      "final_rating": 120}


def median_seconds(fn, repeats: int) -> tuple[float, object]:
    result = fn()  # warm-up (and the result, for the sizes)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def synthetic_study(n_groups: int, seed: int = 0) -> StudyData:
    """A study-shaped ``StudyData`` with ``n_groups`` finished groups (vectorised; ~33 ratings per group)."""
    rng = np.random.default_rng(seed)
    sizes = rng.choice([4, 5], size=n_groups)
    group_of = np.repeat(np.arange(n_groups), sizes)
    member = np.arange(len(group_of))
    seat = member - np.repeat(np.cumsum(sizes) - sizes, sizes)
    loo = rng.random(n_groups) < 0.5
    excluded_seat = rng.integers(0, 4, n_groups)
    excluded = loo[group_of] & (seat == excluded_seat[group_of])
    side = rng.random(len(member)) < 0.3  # minority side
    # Phase of dropping out: 0 none, 1 before rating, 2 before critique, 3 before final rating.
    drop = np.where(rng.random(len(member)) < 0.1, rng.integers(1, 4, len(member)), 0)

    rows = []
    for round_ in (1, 2):
        active = (drop == 0) | (drop > (1 if round_ == 1 else 3))
        m = member[active]
        mm, cc = np.repeat(m, CANDIDATES), np.tile(np.arange(CANDIDATES), len(m))
        gg = group_of[mm]
        # Candidate appeal, a side effect per candidate, and a penalty for left-out members.
        appeal = rng.normal(4.6 if round_ == 1 else 5.0, 0.6, (n_groups, CANDIDATES))
        tilt = rng.normal(0, 1.0, (n_groups, CANDIDATES))
        latent = (appeal[gg, cc] + np.where(side[mm], -1, 1) * tilt[gg, cc] * 0.5 - 0.8 * excluded[mm]
                  + rng.normal(0, 1.0, len(mm)))
        agreement = np.clip(np.rint(latent), 1, 7).astype(int)
        quality = np.clip(np.rint(latent * 0.5 + 2.5 + rng.normal(0, 0.8, len(mm))), 1, 7).astype(int)
        noise = latent + rng.normal(0, 0.3, len(mm))
        order = np.lexsort((-noise, mm))
        rank = np.empty(len(mm), dtype=int)
        rank[order] = np.tile(np.arange(1, CANDIDATES + 1), len(m))
        candidate_id = (gg * 2 + (round_ - 1)) * CANDIDATES + cc
        rows.append(pd.DataFrame({"group_id": gg, "participant_id": mm, "candidate_id": candidate_id,
                                  "round": round_, "agreement": agreement, "quality": quality, "rank": rank}))
    ratings = pd.concat(rows, ignore_index=True)
    # Winner: the candidate with the most first places (a stand-in for Schulze; ties by index).
    firsts = ratings[ratings["rank"] == 1].groupby(["group_id", "round", "candidate_id"]).size().reset_index(name="n")
    winners = firsts.sort_values(["group_id", "round", "n", "candidate_id"], ascending=[True, True, False, True]) \
        .drop_duplicates(["group_id", "round"]).pivot(index="group_id", columns="round", values="candidate_id")
    groups = pd.DataFrame({"group_id": np.arange(n_groups), "condition": np.where(loo, "leave_one_out", "standard"),
                           "question_id": rng.integers(0, 50, n_groups), "phase": "done", "outcome": "completed"})
    groups["excluded_participant_id"] = pd.Series(
        np.where(loo, member[np.cumsum(sizes) - sizes + np.minimum(excluded_seat, sizes - 1)], -1)).where(loo)
    groups["winner_round1_id"] = winners[1].reindex(groups["group_id"]).to_numpy()
    groups["winner_round2_id"] = winners[2].reindex(groups["group_id"]).to_numpy()
    members = pd.DataFrame({"group_id": group_of, "participant_id": member,
                            "status": np.where(drop > 0, "dropped", "completed")})
    submissions = [pd.DataFrame({"group_id": group_of[ok], "participant_id": member[ok], "phase": phase})
                   for phase, ok in (("opinion", np.ones(len(member), bool)), ("rating", (drop == 0) | (drop > 1)),
                                     ("critique", (drop == 0) | (drop > 2)), ("final_rating", drop == 0))]
    times = pd.DataFrame({"group_id": np.repeat(np.arange(n_groups), len(PHASES)),
                          "phase": np.tile(PHASES, n_groups)})
    times["seconds"] = rng.gamma(4.0, 1.0, len(times)) * times["phase"].map(PHASE_MEAN_SECONDS).to_numpy() / 4
    return StudyData(title=f"Synthetic study ({n_groups} groups)", groups=groups, members=members, ratings=ratings,
                     submissions=pd.concat(submissions, ignore_index=True), phase_times=times)


def synthetic_representation(data: StudyData, *, dim: int = 384, seed: int = 0) -> pd.DataFrame:
    """Representation rows from random unit vectors (the convex fits are the part timed here)."""
    rng = np.random.default_rng(seed)
    rows = []
    for group_id, part in data.members.groupby("group_id", sort=False):
        n = len(part)
        affirm, negate = rng.normal(size=dim), rng.normal(size=dim)
        minority = rng.random(n) < 0.3
        opinions = np.where(minority[:, None], negate, affirm) * 0.6 + rng.normal(size=(n, dim))
        for round_ in (1, 2):
            weights = rng.dirichlet(np.ones(n))
            winner = weights @ opinions + rng.normal(0, 0.1, dim)
            result = group_representation(opinions, winner, affirm, negate)
            rows.append({"group_id": group_id, "round": round_, "condition": "standard", "members": n,
                         "minority_members": int(result.minority.sum()), "minority_share": result.minority_share,
                         "minority_weight": result.minority_weight, "winner_position": result.winner_position,
                         "fit_error": result.fit_error})
    return pd.DataFrame(rows)


def offline_predictions(n_groups: int, seed: int = 0) -> pd.DataFrame:
    """group x left-out member (plus the full-group baseline) x member predicted agreements."""
    rng = np.random.default_rng(seed)
    frames = []
    for g in range(n_groups):
        n = int(rng.choice([4, 5]))
        base = rng.normal(5, 1, n)
        left_out = np.repeat(np.r_[np.nan, np.arange(n)], n)
        member_id = np.tile(np.arange(n), n + 1)
        drop = np.where(left_out == member_id, 0.7, 0.1) * (~np.isnan(left_out))
        predicted = np.tile(base, n + 1) - drop + rng.normal(0, 0.2, len(drop))
        frames.append(pd.DataFrame({"group_id": g, "left_out_id": left_out, "member_id": member_id,
                                    "predicted_agreement": predicted}))
    return pd.concat(frames, ignore_index=True)


def interval_text(rows: pd.DataFrame) -> str:
    return "; ".join(f"{r.role}: {r.estimate:.2f} [{r.low:.2f}, {r.high:.2f}]" for r in rows.itertuples())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratings", type=int, nargs="*", default=[100_000, 660_000],
                        help="Study sizes in ratings (about 33 ratings per group).")
    parser.add_argument("--loo-groups", type=int, default=1000)
    parser.add_argument("--representation-groups", type=int, default=1000)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "analysis")
    args = parser.parse_args()
    from provenance import run_record  # command, commit and times for the result file

    run = run_record()
    meta = {"machine": {"processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                        "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
            "bootstrap_resamples": args.bootstrap, "repeats": args.repeats, "target_s": TARGET_S,
            "blas_threads_env": os.environ.get("OMP_NUM_THREADS")}
    rows = []
    for target in args.ratings:
        n_groups = max(10, -(-target // 33))
        data = synthetic_study(n_groups, seed=1)
        representation = synthetic_representation(synthetic_study(min(n_groups, 200), seed=2))
        build_s, report = median_seconds(
            lambda: build_report(data, representation=representation, n_boot=args.bootstrap), args.repeats)
        render_s, html = median_seconds(lambda: render_standalone(report), args.repeats)
        total = build_s + render_s
        rows.append({"task": "whole report", "groups": n_groups, "ratings": len(data.ratings),
                     "members": len(data.members), "metrics": len(report.summary), "figures": len(report.figures), "build_s": round(build_s, 3),
                     "render_s": round(render_s, 3), "seconds": round(total, 3), "html_mb": round(len(html) / 1e6, 2),
                     "target": f"<= {TARGET_S:g} s" if target <= 100_000 else "",
                     "met": (total <= TARGET_S) if target <= 100_000 else None})
        print(rows[-1], flush=True)
    loo_data = synthetic_study(args.loo_groups, seed=3)
    winner_ratings = winner_ratings_frame(loo_data.ratings, loo_data.groups)
    online_s, online = median_seconds(lambda: online_loo(winner_ratings, n_boot=args.bootstrap), args.repeats)
    diff = online[(online["round"] == 1) & (online["measure"] == "agreement") & (online["role"] != "standard groups")]
    rows.append({"task": "online leave-one-out", "groups": args.loo_groups, "rows": len(winner_ratings),
                 "seconds": round(online_s, 4),
                 "result": interval_text(diff)})
    predictions = offline_predictions(args.loo_groups, seed=4)
    offline_s, offline = median_seconds(lambda: offline_loo(predictions, n_boot=args.bootstrap), args.repeats)
    drop = offline[offline["measure"] == "predicted drop"]
    rows.append({"task": "offline leave-one-out", "groups": args.loo_groups, "rows": len(predictions),
                 "seconds": round(offline_s, 4),
                 "result": interval_text(drop)})
    rep_data = synthetic_study(args.representation_groups, seed=5)
    rep_s, _ = median_seconds(lambda: synthetic_representation(rep_data), 1)
    rows.append({"task": "representation convex fits (384-d, 2 winners per group)",
                 "groups": args.representation_groups, "rows": 2 * args.representation_groups,
                 "seconds": round(rep_s, 3), "result": "includes generating the random vectors"})
    meta["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {**run.finish(), **meta}
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str))
    table = markdown(rows, meta)
    args.out.with_suffix(".md").write_text(table)
    print(table)


def markdown(rows: list[dict], meta: dict) -> str:
    m = meta["machine"]
    lines = [f"# Analysis benchmark ({m['cpu_count']} CPUs, {m['processor']}, "
             f"{meta['bootstrap_resamples']} group-bootstrap resamples)", "",
             "| whole report | groups | ratings | metrics | build (s) | render HTML (s) | total (s) | HTML MB "
             "| target |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["task"] == "whole report":
            verdict = "" if r["met"] is None else (" met" if r["met"] else " NOT met")
            lines.append(f"| metrics + LOO + {r.get('figures', 10)} figures + standalone HTML | {r['groups']:,} | {r['ratings']:,} | "
                         f"{r['metrics']} | {r['build_s']} | {r['render_s']} | {r['seconds']} | {r['html_mb']} | "
                         f"{r['target']}{verdict} |")
    lines += ["", "| analysis | groups | input rows | seconds (median) | result |", "|---|---|---|---|---|"]
    for r in rows:
        if r["task"] != "whole report":
            lines.append(f"| {r['task']} | {r['groups']:,} | {r['rows']:,} | {r['seconds']} | {r['result']} |")
    lines += ["", f"Command: `python benchmarks/analysis.py`. Timings are medians of {meta['repeats']} runs after a "
                  f"warm-up. Load average (1/5/15 min) at start {m['load_average_at_start']}, at end "
                  f"{m['load_average_at_end']} on {m['cpu_count']} CPUs: other processes shared the machine."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
