"""Benchmark figures in the docs come from the result files, never typed: benchmarks/report.py --check."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_generated_benchmark_sections_match_their_result_files():
    done = subprocess.run([sys.executable, "benchmarks/report.py", "--check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_check_fails_when_a_section_was_edited_by_hand(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import report
    finally:
        sys.path.pop(0)
    text = "intro\n<!-- polis-benchmark -->\n| typed | 0.99 |\n<!-- /polis-benchmark -->\nend\n"
    rendered = report.render(text, "polis", "| measured | 0.81 |\n")
    assert rendered == "intro\n<!-- polis-benchmark -->\n| measured | 0.81 |\n<!-- /polis-benchmark -->\nend\n"
    assert report.render(rendered, "polis", "| measured | 0.81 |\n") == rendered
