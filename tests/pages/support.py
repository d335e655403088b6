"""Helpers for the page tests: fill the store through ingest, read pages like a user."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape

from django.test import Client

from adminpanel.detect import Thresholds
from adminpanel.ingest import Ingestor
from gateway_bridge.events import RegistryEvent
from tests.support.streams import T0, Stream

NOW = T0 + 600


def ingest(events: Iterator[RegistryEvent] | list[RegistryEvent], now: float = NOW) -> None:
    Ingestor(thresholds=Thresholds(), clock=lambda: now).apply(list(events))


def tick(now: float = NOW) -> None:
    Ingestor(thresholds=Thresholds(), clock=lambda: now).tick(now)


def row_keys(html: str) -> list[str]:
    """The session keys of the sessions table's rows, in page order."""
    return [unescape(k) for k in re.findall(r'<td class="key"><a href="[^"]+">([^<]+)</a>', html)]


def next_link(html: str) -> str | None:
    found = re.search(r'<a rel="next" href="([^"]+)"', html)
    return unescape(found.group(1)) if found else None


def walk(client: Client, url: str) -> list[list[str]]:
    """Follow the "next page" links from ``url``; the keys of each page."""
    pages = []
    next_url: str | None = url
    while next_url:
        response = client.get(next_url)
        assert response.status_code == 200, response.content.decode()[-2000:]
        html = response.content.decode()
        pages.append(row_keys(html))
        next_url = next_link(html)
        assert len(pages) < 100, "the pager never ended"
    return pages


__all__ = ["NOW", "T0", "Stream", "ingest", "next_link", "row_keys", "tick", "walk"]
