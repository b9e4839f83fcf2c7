"""Joining over HTTP as a browser does: the join link shows the consent page (nothing stored yet); the consent
POST to the same link, with the page's consent hash, creates the participant or judge."""
from __future__ import annotations

import re

CONSENT_HASH = re.compile(rb'name="consent_sha256" value="([0-9a-f]{64})"')


def consent_hash(page) -> str:
    match = CONSENT_HASH.search(page.content)
    assert match, page.content[:500]
    return match.group(1).decode()


def join_and_consent(client, url: str, **extra):
    """GET the link; if it shows the consent page, tick the box and POST it. Returns the last response (a redirect
    to the participant's or judge's page when it worked)."""
    page = client.get(url, **extra)
    if page.status_code != 200 or b'name="consent_sha256"' not in page.content:
        return page
    return client.post(url, {"consent": "yes", "consent_sha256": consent_hash(page)}, **extra)
