"""Headless Debian Chromium through Playwright, and the participant's walk through a study."""
from __future__ import annotations

import shutil
from contextlib import contextmanager

PHASE_TIMEOUT_MS = 240_000  # generation on a 2-core CPU, model load included
OPINIONS = [
    "Removing food taxes helps poor families the most, because they spend more of their income on food.",
    "Schools and hospitals need that revenue; removing the tax would only help supermarkets, not families.",
    "Remove the tax on basic groceries like bread and vegetables, but keep it on sweets and fast food.",
]


@contextmanager
def chromium():
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    assert executable, "Debian chromium is required (scripts/setup --dev installs it)"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


def phone_pages(browser, n: int):
    contexts = [browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
                for _ in range(n)]
    return [ctx.new_page() for ctx in contexts]


def join_and_consent(pages, base: str, slug: str, prefix: str = "p") -> None:
    """Open the join link (the consent page: nothing is stored yet) and consent (that creates the participant)."""
    for i, page in enumerate(pages):
        page.goto(f"{base}/s/{slug}/?PROLIFIC_PID={prefix}-{i}&STUDY_ID=S1&SESSION_ID=X{i}")
        assert "Everything you write and rate is stored" in page.inner_text("#consent-disclosure")
        page.check("#consent-box")
        page.click("#consent-submit")
        page.wait_for_url("**/p/*/")


def write_opinions(pages) -> None:
    for page, text in zip(pages, OPINIONS):
        page.wait_for_selector("#opinion-form", timeout=60_000)
        assert "What you type is saved as you type." in page.inner_text("#opinion-notice")
        page.fill("#opinion-text", text)
        page.click("#opinion-submit")


def rate_everything(page, agreement: int, quality: int) -> None:
    page.wait_for_selector("#rating-form", timeout=PHASE_TIMEOUT_MS)
    for card in page.query_selector_all(".candidate"):
        cid = card.get_attribute("data-candidate")
        page.check(f"input[name='agree-{cid}'][value='{agreement}']")
        page.check(f"input[name='quality-{cid}'][value='{quality}']")
    page.click("#rank-list li:last-child button[aria-label='move up']")  # a real reordering
    page.click("#ratings-submit")
    page.wait_for_selector("#waiting, #critique-form, #done, #generating", timeout=30_000)


def critique(pages) -> None:
    for page in pages:
        page.wait_for_selector("#critique-form", timeout=PHASE_TIMEOUT_MS)
        assert page.inner_text("#winner-statement").strip()
        page.fill("#critique-text", "Please say more clearly that basic food should be tax free.")
        page.click("#critique-submit")


def finish(pages) -> list[str]:
    codes = []
    for page in pages:
        page.wait_for_selector("#done", timeout=PHASE_TIMEOUT_MS)
        assert page.inner_text("#final-statement").strip()
        page.click("#finish-link")
        page.wait_for_selector("#completion-code", timeout=30_000)
        codes.append(page.inner_text("#completion-code"))
    return codes
