"""Bonus amounts for Prolific's bulk-bonus upload: pure computation from plain data (no Django).

Rules (``BonusRules``) come from the study; facts per participant (``BonusFacts``) from the database
(``deliberation.bonuses``). ``bonus_lines`` gives one ``PROLIFIC_PID,amount`` line per participant with a
Prolific id and a positive amount, and counts those without an id (they cannot be paid through Prolific).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


class BonusRuleError(ValueError):
    pass


@dataclass(frozen=True)
class BonusRules:
    per_completion: Decimal = Decimal("0")
    per_lobby_minute: Decimal = Decimal("0")
    per_phase: Decimal = Decimal("0")

    def __post_init__(self) -> None:
        for name in ("per_completion", "per_lobby_minute", "per_phase"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite():
                raise BonusRuleError(f"{name} must be a Decimal amount, not {value!r}.")
            if value < 0:
                raise BonusRuleError(f"{name} cannot be negative ({value}).")


@dataclass(frozen=True)
class BonusFacts:
    recruitment_id: str | None  # PROLIFIC_PID
    completed: bool  # finished the study (outcome completed)
    lobby_entered_at: datetime | None
    lobby_left_at: datetime | None  # the group formed, or the lobby timed out
    phases_completed: int


@dataclass(frozen=True)
class BonusFile:
    lines: list[tuple[str, Decimal]]  # (PROLIFIC_PID, amount)
    skipped_without_id: int  # participants with a bonus but no Prolific id
    total: Decimal

    def csv_text(self) -> str:
        """Prolific's format: no header, ``PROLIFIC_PID,amount`` per line, two decimals."""
        return "".join(f"{pid},{amount:.2f}\n" for pid, amount in self.lines)


def lobby_minutes(facts: BonusFacts) -> Decimal:
    if facts.lobby_entered_at is None or facts.lobby_left_at is None:
        return Decimal("0")
    seconds = max(0.0, (facts.lobby_left_at - facts.lobby_entered_at).total_seconds())
    return Decimal(str(seconds)) / Decimal(60)


def bonus_amount(rules: BonusRules, facts: BonusFacts) -> Decimal:
    amount = (rules.per_completion * (1 if facts.completed else 0)
              + rules.per_lobby_minute * lobby_minutes(facts)
              + rules.per_phase * max(0, facts.phases_completed))
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def bonus_lines(rules: BonusRules, participants: Iterable[BonusFacts]) -> BonusFile:
    """Every participant owed a positive bonus; those without a Prolific id are counted, not listed."""
    lines, skipped, total = [], 0, Decimal("0.00")
    for facts in participants:
        amount = bonus_amount(rules, facts)
        if amount <= 0:
            continue
        pid = (facts.recruitment_id or "").strip()
        if not pid or "," in pid or "\n" in pid:
            skipped += 1
            continue
        lines.append((pid, amount))
        total += amount
    return BonusFile(lines=lines, skipped_without_id=skipped, total=total)
