"""Exit 0 when every pinned requirement in the given files is installed at an allowed version, else 1.

scripts/setup runs it first so a warm machine skips pip entirely (well under a second). Follows ``-r`` includes;
prints what is missing or at another version.
"""
from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement


def requirements(path: Path) -> list[Requirement]:
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ")):
            found += requirements(path.parent / line.split(None, 1)[1])
            continue
        if line.startswith("-"):
            continue  # pip options (--no-deps, --index-url ...) name no package
        try:
            found.append(Requirement(line))
        except InvalidRequirement:
            found.append(Requirement(line.split(";", 1)[0].strip()))
    return found


def unmet(files: list[Path]) -> list[str]:
    problems = []
    for req in (r for f in files for r in requirements(f)):
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            installed = version(req.name)
        except PackageNotFoundError:
            problems.append(f"{req.name}: not installed")
            continue
        if req.specifier and not req.specifier.contains(installed, prereleases=True):
            problems.append(f"{req.name}: {installed} installed, {req.specifier} wanted")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="requirements files (e.g. requirements-dev.txt)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    args = parser.parse_args(argv)
    problems = unmet(args.files)
    if problems and not args.quiet:
        print("\n".join(problems), file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
