"""The one-way layering of docs/architecture.md, enforced: `lint-imports` checks the contracts in pyproject.toml."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_lint_imports_keeps_every_contract():
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def copy_of_the_apps(tmp_path: Path) -> Path:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    for name in config["root_packages"]:  # every app the contracts name
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "migrations"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_an_upward_import_breaks_the_layers(tmp_path):
    """The contracts can fail: a copy of the apps in which deliberation imports analysis is refused."""
    copy_of_the_apps(tmp_path)
    services = tmp_path / "deliberation" / "services.py"
    services.write_text(services.read_text() + "\nfrom analysis.reward import registry  # noqa: E402\n")
    result = lint_imports(cwd=tmp_path)
    assert result.returncode != 0
    assert "deliberation is not allowed to import analysis" in result.stdout
    assert "deliberation.services -> analysis.reward.registry" in result.stdout


def test_an_import_cycle_inside_an_app_is_refused(tmp_path):
    copy_of_the_apps(tmp_path)
    selectors = tmp_path / "deliberation" / "selectors.py"
    selectors.write_text(selectors.read_text() + "\nfrom . import services  # noqa: E402\n")
    result = lint_imports(cwd=tmp_path)
    assert result.returncode != 0
    assert "No cycles are allowed in deliberation" in result.stdout


def test_the_functions_named_in_settings_exist():
    """The calls up the layers (settings names resolved with import_string) point at real functions."""
    from django.conf import settings
    from django.utils.module_loading import import_string

    for name in ("IN_PROCESS_GENERATE", "BEST_OF_N_SCORER", "CSV_QUERYSET_WRITER", "ASGI_SERVE"):
        assert callable(import_string(getattr(settings, name))), name
