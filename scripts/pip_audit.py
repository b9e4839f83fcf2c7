"""pip-audit over the pinned environment, refusing to pass on an audit that checked nothing.

Run with ``scripts/audit``. Needs PyPI's per-release JSON API (``/pypi/NAME/VERSION/json``), which
carries the vulnerability data pip-audit reads. Exit status 0 only when every pinned package was
audited and none has a known vulnerability.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REQUIREMENT_FILES = ("requirements.txt", "requirements-dev.txt", "requirements-models.txt")
# Known vulnerabilities accepted with a reason (pip-audit --ignore-vuln ID). Keep each one explained.
IGNORED_VULNS: dict[str, str] = {}


def pinned_requirements() -> dict[str, str]:
    pins = {}
    for name in REQUIREMENT_FILES:
        for line in (ROOT / name).read_text().splitlines():
            match = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;#]+)", line.strip())
            if match:
                pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


def fail(message: str) -> int:
    print(f"pip-audit: FAILED: {message}", file=sys.stderr)
    return 1


def main() -> int:
    try:
        urllib.request.urlopen("https://pypi.org/pypi/pip/json", timeout=20).read()  # nosec B310  # fixed https URL
    except OSError as exc:
        return fail(f"pypi.org could not be reached ({exc}); run it on a machine with access to PyPI's JSON API.")
    pins = pinned_requirements()
    ignore = [arg for vuln in IGNORED_VULNS for arg in ("--ignore-vuln", vuln)]
    out = subprocess.run([str(BIN / "pip-audit"), "-s", "pypi", "-l", "--progress-spinner", "off", "-f", "json",
                          "--timeout", "30", *ignore], cwd=ROOT, capture_output=True, text=True, timeout=900)
    report = json.loads(out.stdout or "{}")
    installed = {d["name"]: d for d in report.get("dependencies", [])}
    # The environment is what the requirement files pin (so auditing it audits the pins).
    for name, version in pins.items():
        dep = installed.get(name)
        if dep is None:
            return fail(f"{name} is pinned but not installed (run scripts/setup --dev first)")
        found = re.search(r"\(([^)]*)\)\s*$", dep.get("skip_reason", ""))
        shown = dep.get("version") or (found.group(1) if found else "?")
        if shown.split("+")[0] != version:
            return fail(f"{name}: installed {shown}, pinned {version}")
    vulns = [f"{d['name']} {d['version']}: {v['id']} (fixed in {', '.join(v['fix_versions']) or 'no release yet'})"
             for d in installed.values() for v in d.get("vulns", [])]
    if vulns:
        return fail("known vulnerabilities:\n" + "\n".join(vulns))
    unaudited = sorted(name for name in pins if "skip_reason" in installed[name])
    if unaudited:
        return fail(f"no vulnerability data for {len(unaudited)} of {len(pins)} pinned packages "
                    f"({', '.join(unaudited[:8])}{', ...' if len(unaudited) > 8 else ''}): pypi.org answered, but "
                    f"not its per-release JSON (/pypi/NAME/VERSION/json) that carries the vulnerabilities. An audit "
                    f"that checked nothing is not a pass. First reason given: {installed[unaudited[0]]['skip_reason']}")
    print(f"pip-audit: {len(pins)} pinned packages audited, no known vulnerabilities")
    return 0


if __name__ == "__main__":
    sys.exit(main())
