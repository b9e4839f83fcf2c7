"""Benchmark figures in the docs come from the result files, never typed: benchmarks/report.py --check."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def benchmark_module(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


def test_generated_benchmark_pages_match_their_result_files():
    done = subprocess.run([sys.executable, "benchmarks/report.py", "--check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_check_fails_when_a_section_was_edited_by_hand(tmp_path):
    report = benchmark_module("report")
    text = "intro\n<!-- polis-benchmark -->\n| typed | 0.99 |\n<!-- /polis-benchmark -->\nend\n"
    rendered = report.render(text, "polis", "| measured | 0.81 |\n")
    assert rendered == "intro\n<!-- polis-benchmark -->\n| measured | 0.81 |\n<!-- /polis-benchmark -->\nend\n"
    assert report.render(rendered, "polis", "| measured | 0.81 |\n") == rendered


def test_every_result_file_gets_a_section_and_missing_provenance_is_said_not_invented(tmp_path, monkeypatch):
    report = benchmark_module("report")
    results = tmp_path / "results"
    results.mkdir()
    (results / "alpha.json").write_text(json.dumps({
        "command": "python benchmarks/alpha.py --x 1", "commit": "abc1234",
        "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T00:01:00+00:00"}))
    (results / "alpha.md").write_text("# Alpha\n\n| a |\n|---|\n| 1 |\n")
    (results / "beta.json").write_text(json.dumps({"meta": {"cpus": 2}, "rows": []}))
    monkeypatch.setattr(report, "RESULTS", results)
    page = report.page()
    alpha, beta = page.split("## `alpha`")[1].split("## `beta`")
    assert "- command: `python benchmarks/alpha.py --x 1`" in alpha and "- commit: `abc1234`" in alpha
    assert "2026-01-01T00:00:00+00:00 to 2026-01-01T00:01:00+00:00" in alpha
    assert "### Alpha" in alpha and "| 1 |" in alpha
    assert beta.count("not recorded in the result file") == 3
    assert "wrote no `benchmarks/results/beta.md`" in beta


def test_a_benchmark_run_records_its_command_commit_and_times():
    provenance = benchmark_module("provenance")
    record = provenance.run_record(["--seeds", "0,1"]).finish()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    assert record["commit"].split("-")[0] == head
    assert record["command"].endswith("--seeds 0,1") and record["command"].startswith("python ")
    assert record["started_at"] <= record["finished_at"]
    # A path of this machine is recorded as the repository names it, never whole.
    outside = "/somewhere/else/checkout/benchmarks/results/load-x"
    record = provenance.run_record(["--out", outside, "--in", str(ROOT / "benchmarks" / "data.json"),
                                    "--postgres", "postgresql://127.0.0.1"]).finish()
    assert record["command"].endswith("--out benchmarks/results/load-x --in benchmarks/data.json "
                                      "--postgres postgresql://127.0.0.1"), record["command"]


def test_no_result_file_or_page_names_a_path_of_the_machine_that_ran_it():
    for path in [*(ROOT / "benchmarks" / "results").glob("*.json"), *(ROOT / "benchmarks" / "results").glob("*.md"),
                 *(ROOT / "docs").glob("*.md"), ROOT / "README.md"]:
        text = path.read_text()
        for prefix in ("/work/", "/home/", "/root/", str(ROOT) + "/"):  # /tmp in a how-to's example is fine
            assert f" {prefix}" not in text and f"`{prefix}" not in text, (path.name, prefix)
