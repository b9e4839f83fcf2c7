"""Fill the marked benchmark sections of the docs from the result files the benchmarks wrote.

    .venv/bin/python benchmarks/report.py          # rewrite the sections
    .venv/bin/python benchmarks/report.py --check  # exit 1 if a section differs from its result file

A section is the text between ``<!-- NAME-benchmark -->`` and ``<!-- /NAME-benchmark -->`` in README.md or any
docs/*.md; its content is benchmarks/results/NAME.md, which only the benchmark that measured it writes (from its
JSON beside it). Figures in these sections are therefore never typed by hand. Sections listed in GENERATED are
the ones this script owns; the others are still maintained by hand and left alone.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GENERATED = ("polis", "polis-seeds")


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def render(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {re.escape(name)}-benchmark -->\n).*?(<!-- /{re.escape(name)}-benchmark -->)",
                         re.DOTALL)
    return pattern.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="Only check; exit 1 if a section is out of date.")
    args = parser.parse_args(argv)
    stale = []
    for path in documents():
        text = original = path.read_text()
        for name in GENERATED:
            result = RESULTS / f"{name}.md"
            if f"<!-- {name}-benchmark -->" in text and result.exists():
                text = render(text, name, result.read_text())
        if text != original:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(text)
    for path in stale:
        print(f"{'out of date' if args.check else 'updated'}: {path}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
