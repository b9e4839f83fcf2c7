"""The translation catalogs are complete and shipped compiled: every text the code marks for translation is in
each language's .po file, translated (no empty or fuzzy entry, the same placeholders), and the committed .mo
files say exactly what the .po files say (a fresh machine may lack GNU gettext to compile them)."""
from __future__ import annotations

import gettext
import re
import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings

from .po import Entry, read_po

LOCALE = Path(settings.BASE_DIR) / "locale"
DOMAINS = ("django", "djangojs")
LANGUAGES = [code for code, _ in settings.LANGUAGES if code != "en"]  # English is the source language
# The folders makemessages reads: the tree less tests, docs, staticfiles and var (docs/experimenter.md "Languages").
SOURCE_DIRS = ("config", "core", "participants", "deliberation", "generation", "analysis", "legibility", "bots",
               "templates", "static")
PLACEHOLDER = re.compile(r"%\(\w+\)[sdif]|%\(\w+\)\.\d+f|%[sd]|\{\w*\}")


def _catalog(language: str, domain: str) -> list[Entry]:
    return read_po(LOCALE / language / "LC_MESSAGES" / f"{domain}.po")


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("domain", DOMAINS)
def test_every_entry_is_translated_with_the_same_placeholders(language, domain):
    entries = _catalog(language, domain)
    assert entries, f"{language}/{domain}.po has no entries"
    for entry in entries:
        where = f"{language}/{domain}.po: {entry.msgid[:60]!r}"
        assert not entry.obsolete, f"obsolete entry (makemessages --no-obsolete drops it): {where}"
        assert "fuzzy" not in entry.flags, f"fuzzy entry: {where}"
        forms = [entry.msgstr.get(i, "") for i in range(2 if entry.msgid_plural else 1)]
        assert all(form.strip() for form in forms), f"untranslated entry: {where}"
        for source, form in zip([entry.msgid, entry.msgid_plural or entry.msgid], forms):
            assert sorted(PLACEHOLDER.findall(source)) == sorted(PLACEHOLDER.findall(form)), where


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("domain", DOMAINS)
def test_the_committed_mo_file_says_what_the_po_file_says(language, domain):
    directory = LOCALE / language / "LC_MESSAGES"
    with open(directory / f"{domain}.mo", "rb") as mo:
        compiled = gettext.GNUTranslations(mo)
    stale = []
    for entry in _catalog(language, domain):
        if entry.msgid_plural:
            got = [compiled.npgettext(entry.msgctxt, entry.msgid, entry.msgid_plural, n) if entry.msgctxt
                   else compiled.ngettext(entry.msgid, entry.msgid_plural, n) for n in (1, 2)]
            want = [entry.msgstr[0], entry.msgstr[1]]
        else:
            got = compiled.pgettext(entry.msgctxt, entry.msgid) if entry.msgctxt else compiled.gettext(entry.msgid)
            want = entry.msgstr[0]
        if got != want:
            stale.append(entry.msgid[:60])
    assert not stale, f"{language}/{domain}.mo is older than its .po (run compilemessages): {stale}"


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_text_marked_in_the_code_is_in_every_catalog(domain, tmp_path, monkeypatch):
    """makemessages over a copy of the sources, into an empty locale folder: each of its msgids must be in the
    committed catalogs (and nothing else, so a catalog holds no text the code no longer shows)."""
    assert shutil.which("xgettext"), "GNU gettext is needed (scripts/setup --dev installs it)"
    root = Path(settings.BASE_DIR)
    for name in SOURCE_DIRS:
        shutil.copytree(root / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (tmp_path / "locale").mkdir()
    monkeypatch.chdir(tmp_path)
    with override_settings(LOCALE_PATHS=[tmp_path / "locale"]):
        call_command("makemessages", locale=["de"], domain=domain, verbosity=0, no_obsolete=True)
    found = {entry.key for entry in read_po(tmp_path / "locale" / "de" / "LC_MESSAGES" / f"{domain}.po")}
    assert len(found) > 20  # the run found the marked texts
    for language in LANGUAGES:
        shipped = {entry.key for entry in _catalog(language, domain)}
        assert not found - shipped, f"missing from {language}/{domain}.po (run makemessages): {found - shipped}"
        assert not shipped - found, f"no longer in the code, still in {language}/{domain}.po: {shipped - found}"
