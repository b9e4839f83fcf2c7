"""Benchmark: which legibility verifier? An ablation on the real GSM8K model solutions, on CPU.

    .venv/bin/python benchmarks/verifier.py [--threads 1] [--skip-finetune] [--seeds 0,1,2]

Two protocols, the same as the commands in docs/legibility.md, without a database:

- **study**: the study's split after ``import_gsm8k --limit 1000`` (seed 0): train on the verifier half of the
  first 1,000 test problems' shipped solutions, evaluate on the held-out half (``legibility_round``'s figure);
- **unseen**: train on the verifier half after ``import_gsm8k --limit 600``, evaluate on test lines 601-1000,
  problems it never saw (``evaluate_verifier --skip-problems 600``'s figure).

Each protocol's error model learns from GSM8K's training problems except that import's prover half
(``train.jsonl``, as ``legibility_round`` does; ``rounds.reference_bank``).

Variants (``legibility.verifier.VerifierConfig``): the evidence alone in the linear head, and with the boosted
trees (the default before the error model); the evidence with the error model's score, in the linear head and
with the trees (the default), the default again with other seeds (``--seeds``: the error model's sample and
synthetic errors, the pairs and the trees change with it); frozen MiniLM features of (problem, solution)
alone, with the evidence, with the evidence and trees, and with the error model too; and MiniLM fine-tuned end
to end as a cross-encoder with the Bradley-Terry + λV² + cross-entropy loss, with the evidence in its head. The
fine-tuned variant trains on a subsample (the first ``FINETUNE_PROBLEMS`` training problems, 256 tokens, 2
epochs) to fit a shared 2-core CPU; it is marked so.
Beside each variant: the length baseline's AUC ("shorter is better") and the majority-class accuracy on the
same test solutions. The design was chosen by cross-validation on the training split, not on these figures.

Writes benchmarks/results/verifier.json and verifier.md (the table) and prints the table.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from legibility import verifier as vlib  # noqa: E402
from legibility.examples import default_data_dir, load_references, load_solutions_jsonl  # noqa: E402
from legibility.overlap import text_hash  # noqa: E402

SOLUTIONS = default_data_dir() / "gsm8k" / "example_model_solutions.jsonl"
TRAIN = default_data_dir() / "gsm8k" / "train.jsonl"
RESULTS = ROOT / "benchmarks" / "results"
FINETUNE_PROBLEMS = 150
DEFAULT = "evidence + error model, linear head + trees (default)"
VARIANTS = (
    ("evidence, linear head", {"trees": 0, "error_model": 0}),
    ("evidence, linear head + trees", {"error_model": 0}),
    ("evidence + error model, linear head", {"trees": 0}),
    (DEFAULT, {}),
    ("frozen MiniLM (problem, solution) alone", {"text": True, "features": False, "trees": 0}),
    ("frozen MiniLM + evidence, linear head", {"text": True, "trees": 0, "error_model": 0}),
    ("frozen MiniLM + evidence, linear head + trees", {"text": True, "error_model": 0}),
    ("frozen MiniLM + evidence + error model, linear head + trees", {"text": True}),
)
FINETUNE = ("MiniLM cross-encoder fine-tuned (BT + λV² + CE) + evidence in the head, subsampled",
            {"text": True, "train_layers": None, "trees": 0, "error_model": 0, "max_length": 256, "epochs": 2,
             "batch_size": 8, "learning_rate": 5e-5})


def derive_seed(*parts: object) -> int:
    """``deliberation.services.derive_seed`` (the import's halves), without importing Django."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def verifier_half(index: int, seed: int = 0) -> bool:
    """``importing.assign_half`` for the shipped test problems: True = verifier half, False = held out."""
    first_goes_to_verifier = random.Random(derive_seed(seed, "half", index // 2)).random() < 0.5
    return (index % 2 == 0) == first_goes_to_verifier


def references(limit: int, seed: int = 0) -> list[tuple[str, str]]:
    """``rounds.reference_bank`` without a database: train.jsonl less the prover half of its first ``limit``
    lines (``importing.assign_half`` with halves (prover, verifier))."""
    with TRAIN.open(encoding="utf-8") as handle:
        questions = [json.loads(line)["question"] for line in handle if line.strip()]
    prover = {text_hash(q) for i, q in enumerate(questions[:limit]) if verifier_half(i, seed)}
    return load_references(TRAIN, exclude_hashes=prover)


def protocols() -> dict[str, tuple[list, list]]:
    examples = load_solutions_jsonl(SOLUTIONS)
    line_of = {}
    for e in examples:
        line_of.setdefault(e.problem_id, len(line_of))
    study_train = [e for e in examples if line_of[e.problem_id] < 1000 and verifier_half(line_of[e.problem_id])]
    study_test = [e for e in examples if line_of[e.problem_id] < 1000 and not verifier_half(line_of[e.problem_id])]
    unseen_train = [e for e in examples if line_of[e.problem_id] < 600 and verifier_half(line_of[e.problem_id])]
    unseen_test = [e for e in examples if 600 <= line_of[e.problem_id] < 1000]
    return {"study": (study_train, study_test), "unseen": (unseen_train, unseen_test)}


def cache_error_models() -> None:
    """Variants with the same seed and references share one error model (its fit takes a minute)."""
    original = vlib.fit_error_model
    memo: dict = {}

    def cached(refs, config, *, exclude=frozenset(), progress=None):
        key = (len(refs), hash(tuple(refs)), config.seed, config.error_model, config.error_model_problems,
               frozenset(exclude))
        if key not in memo:
            started = time.perf_counter()
            memo[key] = (*original(refs, config, exclude=exclude, progress=progress),
                         round(time.perf_counter() - started, 1))
        model, info, seconds = memo[key]
        return model, {**info, "seconds": seconds}

    vlib.fit_error_model = cached


def cache_encoder_features() -> None:
    """The frozen variants share one encoder pass per (problem, solution, length): memoise it."""
    original = vlib._pooled_features
    memo: dict = {}

    def cached(model, tokenizer, problems, solutions, max_length, batch_size=32, progress=None):
        if any(p.requires_grad for p in model.backbone.parameters()):  # a fine-tuned encoder: no sharing
            return original(model, tokenizer, problems, solutions, max_length, batch_size)
        keys = [(max_length, p, s) for p, s in zip(problems, solutions, strict=True)]
        todo = list(dict.fromkeys(k for k in keys if k not in memo))
        if todo:
            out = original(model, tokenizer, [k[1] for k in todo], [k[2] for k in todo], max_length, batch_size)
            memo.update(zip(todo, out, strict=True))
        return torch.stack([memo[k] for k in keys])

    vlib._pooled_features = cached


def first_problems(examples: list, n: int) -> list:
    keep = list(dict.fromkeys(e.problem_id for e in examples))[:n]
    return [e for e in examples if e.problem_id in set(keep)]


def run_variant(name: str, overrides: dict, train: list, test: list, threads: int, refs: list) -> dict:
    config = vlib.VerifierConfig(**{"seed": 0, "threads": threads, **overrides})
    started = time.perf_counter()
    verifier, history = vlib.train_verifier(train, config, references=refs)
    trained = time.perf_counter() - started
    started = time.perf_counter()
    metrics = vlib.evaluate(verifier, test)
    return {"variant": name, "config": {k: v for k, v in overrides.items()}, "auc": metrics["auc"],
            "balanced_best_of_4": metrics["balanced_best_of_4"],
            "accuracy_at_best_threshold": metrics["accuracy_at_best_threshold"],
            "length_auc": metrics["baselines"]["length_auc"],
            "majority_accuracy": metrics["baselines"]["majority_accuracy"],
            "n_train": len(train), "n_train_problems": len({e.problem_id for e in train}), "n_test": metrics["n"],
            "n_test_problems": metrics["n_problems"], "train_seconds": round(trained, 1),
            "score_seconds": round(time.perf_counter() - started, 1), "steps": history["steps"],
            "error_model": history["error_model"]}


def table(rows: list[dict]) -> str:
    lines = ["| protocol | variant | ROC AUC | balanced best-of-4 | length AUC | majority acc. | train (problems) "
             "| test (problems) | train s | score s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['protocol']} | {r['variant']} | {r['auc']:.4f} | {r['balanced_best_of_4']:.4f} | "
                     f"{r['length_auc']:.4f} | {r['majority_accuracy']:.4f} | {r['n_train']} ({r['n_train_problems']}) "
                     f"| {r['n_test']} ({r['n_test_problems']}) | {r['train_seconds']} | {r['score_seconds']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: a shared machine)")
    parser.add_argument("--skip-finetune", action="store_true", help="Leave out the fine-tuned cross-encoder.")
    parser.add_argument("--skip-text", action="store_true", help="Leave out every variant that reads the text.")
    parser.add_argument("--seeds", default="0,1,2", help="Seeds of the default variant, comma-separated (default "
                                                         "0,1,2; the other variants use seed 0).")
    args = parser.parse_args()
    from provenance import run_record  # command, commit and times for the result file

    run = run_record()
    torch.set_num_threads(args.threads)
    cache_encoder_features()
    cache_error_models()
    started = time.perf_counter()
    rows = []
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    for protocol, (train, test) in protocols().items():
        refs = references({"study": 1000, "unseen": 600}[protocol])
        variants = [v for v in VARIANTS if not (args.skip_text and v[1].get("text"))]
        variants += [(f"{DEFAULT}, seed {s}", {"seed": s}) for s in seeds if s != 0]
        variants += [] if args.skip_finetune or args.skip_text else [FINETUNE]
        for name, overrides in variants:
            data = first_problems(train, FINETUNE_PROBLEMS) if overrides is FINETUNE[1] else train
            row = {"protocol": protocol, **run_variant(name, overrides, data, test, args.threads, refs)}
            rows.append(row)
            print(f"{protocol:7s} {name:80s} AUC {row['auc']:.4f} (length {row['length_auc']:.4f}) "
                  f"{row['train_seconds']} s", flush=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    result = {"benchmark": "legibility verifier ablation", "command": "python benchmarks/verifier.py "
              + " ".join(sys.argv[1:]), "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                                   "torch_threads": args.threads, "load_average_at_end": load,
                                                   "gpu": torch.cuda.is_available()},
              "protocols": {"study": "import_gsm8k --limit 1000 (seed 0): verifier half -> held-out half",
                            "unseen": "import_gsm8k --limit 600: verifier half -> test lines 601-1000"},
              "error_model_references": "gsm8k/train.jsonl less the import's prover half (rounds.reference_bank)",
              "seconds": round(time.perf_counter() - started, 1), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    result.update(run.finish())
    (RESULTS / "verifier.json").write_text(json.dumps(result, indent=2) + "\n")
    text = table(rows)
    (RESULTS / "verifier.md").write_text(
        "<!-- written by benchmarks/verifier.py from verifier.json; do not edit -->\n" + text)
    print(text)


if __name__ == "__main__":
    main()
