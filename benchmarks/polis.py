"""Benchmark: the reward model against the vote-counting baselines on the shipped Polis conversations.

    .venv/bin/python benchmarks/polis.py [--seeds 0] [--threads 1] [--variants cross,bi]

For every conversation under ../shared/data/polis and both splits (``votes``: 20 % of the (participant,
statement) votes hidden; ``statements``: every vote on 20 % of the statements hidden, the best-of-N case), runs
exactly what ``manage.py evaluate_polis DIR --seed S --split SPLIT`` runs with its default options and records
accuracy and AUC of the default reward model and of every baseline the split allows, on the same hidden votes,
plus the seconds spent fitting and scoring the reward model and for the whole evaluation.

Writes benchmarks/results/polis.json (with the command, commit and time) and polis.md; ``benchmarks/report.py``
puts the table into the README. Target (issue 12): in each split, the reward model's mean AUC over the
conversations is at least the best baseline's mean AUC + 0.02, in at most 5 minutes per conversation.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

POLIS = ROOT.parent / "shared" / "data" / "polis"
RESULTS = ROOT / "benchmarks" / "results"
MARGIN = 0.02
MAX_SECONDS = 300


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def summarise(runs: list[dict]) -> dict:
    """Per split: mean AUC per predictor over the conversations (and seeds), the best baseline, the margin."""
    out = {}
    for split in sorted({r["split"] for r in runs}):
        rows = [r for r in runs if r["split"] == split]
        names = sorted(set.intersection(*(set(r["results"]) for r in rows)))
        mean_auc = {n: round(float(np.mean([r["results"][n]["auc"] for r in rows])), 4) for n in names}
        baselines = {n: a for n, a in mean_auc.items() if n != "reward_model"}
        best = max(baselines, key=baselines.get)
        per_conversation_best = round(float(np.mean([max(v["auc"] for k, v in r["results"].items()
                                                         if k != "reward_model") for r in rows])), 4)
        margin = round(mean_auc["reward_model"] - baselines[best], 4)
        out[split] = {"mean_auc": mean_auc, "best_baseline": best, "best_baseline_auc": baselines[best],
                      "mean_of_per_conversation_best_auc": per_conversation_best, "margin": margin,
                      "margin_over_per_conversation_best": round(mean_auc["reward_model"] - per_conversation_best, 4),
                      "target_met": margin >= MARGIN,
                      "max_seconds_per_conversation": max(r["seconds_total"] for r in rows)}
    return out


def markdown(payload: dict) -> str:
    lines = [f"Reward model vs baselines on the shipped Polis conversations (AUC / accuracy on hidden agree-vs-disagree "
             f"votes; seeds {', '.join(map(str, payload['seeds']))}; `{payload['command']}` at {payload['commit']})", ""]
    for split, summary in payload["summary"].items():
        rows = [r for r in payload["runs"] if r["split"] == split]
        names = ["reward_model", *sorted(n for n in summary["mean_auc"] if n != "reward_model")]
        lines += [f"**split `{split}`**", "",
                  "| conversation | seed | " + " | ".join(names) + " | majority class | RM fit+score s |",
                  "|---|---|" + "---|" * (len(names) + 2)]
        for r in rows:
            cells = [f"{r['results'][n]['auc']:.3f} / {r['results'][n]['accuracy']:.3f}" for n in names]
            lines.append(f"| {r['conversation']} | {r['seed']} | " + " | ".join(cells)
                         + f" | {r['majority_class_accuracy']:.3f} | {r['reward_model']['seconds']:.1f} |")
        lines.append("| **mean AUC** | | " + " | ".join(f"**{summary['mean_auc'][n]:.3f}**" for n in names)
                     + " | | |")
        variants = sorted({v for r in rows for v in r.get("variants", {})})
        if variants:
            lines += ["", "Designs compared on the same hidden votes (AUC / accuracy): the default `hybrid` and the "
                      "neural `" + "`, `".join(variants) + "` (`--variants`):", "",
                      "| conversation | hybrid (default) | " + " | ".join(variants) + " |",
                      "|---|---|" + "---|" * len(variants)]
            for r in rows:
                cells = [f"{r['variants'][v]['auc']:.3f} / {r['variants'][v]['accuracy']:.3f}" for v in variants]
                rm = r["results"]["reward_model"]
                lines.append(f"| {r['conversation']} | {rm['auc']:.3f} / {rm['accuracy']:.3f} | " + " | ".join(cells)
                             + " |")
            means = [np.mean([r["variants"][v]["auc"] for r in rows]) for v in variants]
            lines.append(f"| **mean AUC** | **{summary['mean_auc']['reward_model']:.3f}** | "
                         + " | ".join(f"**{m:.3f}**" for m in means) + " |")
        verdict = "met" if summary["target_met"] else "not met"
        lines += ["", f"Mean AUC: reward model {summary['mean_auc']['reward_model']:.4f}, best baseline "
                  f"`{summary['best_baseline']}` {summary['best_baseline_auc']:.4f}: margin **{summary['margin']:+.4f}** "
                  f"(target +{MARGIN}: {verdict}); against the best baseline of each conversation "
                  f"{summary['margin_over_per_conversation_best']:+.4f}. Slowest conversation "
                  f"{summary['max_seconds_per_conversation']:.0f} s (limit {MAX_SECONDS} s).", ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0", help="Comma-separated seeds (default 0, the issue's setting).")
    parser.add_argument("--splits", default="votes,statements", help="Comma-separated splits (default both).")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1).")
    parser.add_argument("--variants", default="", help="Also run the neural designs (cross, bi): slow on a CPU.")
    parser.add_argument("--variant-examples", type=int, default=1500,
                        help="Neural variants: train on at most this many visible votes (seeded sample; default 1500, "
                             "as evaluate_polis).")
    parser.add_argument("--data", type=Path, default=POLIS, help="Folder of Polis conversations.")
    parser.add_argument("--out", type=Path, default=RESULTS / "polis", help="Output path without extension.")
    args = parser.parse_args(argv)
    import torch

    from analysis.polis import SPLITS, evaluate_conversation, load_conversation

    torch.set_num_threads(args.threads)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error("--seeds must be comma-separated integers")
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    if not set(splits) <= set(SPLITS):
        parser.error(f"--splits: choose from {', '.join(SPLITS)}")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    folders = sorted(p for p in args.data.iterdir() if (p / "votes.csv").exists())
    if not folders:
        parser.error(f"no Polis conversations under {args.data}")
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    runs = []
    with tqdm(total=len(folders) * len(splits) * len(seeds), desc="polis", unit="run") as bar:
        for seed in seeds:
            for split in splits:
                for folder in folders:
                    bar.set_postfix_str(f"{folder.name} {split} seed {seed}")
                    start = time.perf_counter()
                    result = evaluate_conversation(load_conversation(folder), seed=seed, split=split,
                                                   variants=variants, max_train_examples=args.variant_examples)
                    result["seconds_total"] = round(time.perf_counter() - start, 2)
                    runs.append(result)
                    bar.update()
    command = "benchmarks/polis.py " + " ".join(argv if argv is not None else sys.argv[1:])
    payload = {"benchmark": "polis", "command": command.strip(), "commit": commit(), "started_at": started_at,
               "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch_threads": args.threads,
                           "load_average": list(os.getloadavg())},
               "seeds": seeds, "target": {"margin_auc": MARGIN, "max_seconds_per_conversation": MAX_SECONDS},
               "summary": summarise(runs), "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    text = markdown(payload)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return payload


if __name__ == "__main__":
    main()
