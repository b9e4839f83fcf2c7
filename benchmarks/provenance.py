"""What every benchmark result file records about its run: the command, the commit and the times.

    from provenance import run_record          # benchmarks/ is on sys.path when a benchmark runs
    started = run_record()                     # at the start
    payload = {**started.finish(), ...}        # command, commit, started_at, finished_at

``benchmarks/report.py`` prints these on docs/benchmarks.md, and says so where a result file lacks one.
"""
from __future__ import annotations

import datetime
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def commit() -> str:
    """The short commit hash, with ``-dirty`` when tracked files differ from it; "unknown" outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def command(argv: list[str] | None = None) -> str:
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(ROOT)
    except ValueError:
        pass
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python", shlex.quote(str(script)), *(shlex.quote(repo_relative(a)) for a in args)])


def repo_relative(arg: str) -> str:
    """An argument naming a path of this machine, as the repository names it: a path inside the checkout relative
    to it, and a result path written from another checkout (a worktree's run writing into the main one's
    benchmarks/results/) from ``benchmarks/results/`` on. No machine path goes into a result file."""
    if not arg.startswith("/"):
        return arg
    try:
        return str(Path(arg).relative_to(ROOT))
    except ValueError:
        pass
    marker = "/benchmarks/results/"
    return arg[arg.index(marker) + 1:] if marker in arg else arg


@dataclass
class RunRecord:
    argv: list[str] | None = None
    started_at: str = field(default_factory=now)
    commit: str = field(default_factory=commit)

    def finish(self) -> dict[str, str]:
        return {"command": command(self.argv), "commit": self.commit, "started_at": self.started_at,
                "finished_at": now()}


def run_record(argv: list[str] | None = None) -> RunRecord:
    return RunRecord(argv=argv)
