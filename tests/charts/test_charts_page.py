"""The charts page: who may see it, what it draws, and its htmx partial."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tests.charts.support import flag, gateway_with_session, run, skip
from tests.support.users import make_user

pytestmark = pytest.mark.django_db
SVG = re.compile(r"<svg\b.*?</svg>", re.S)
NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def viewer() -> Client:
    make_user("viewer", "pw-viewer-1")
    client = Client()
    client.login(username="viewer", password="pw-viewer-1")
    return client


def svgs(html: str) -> list[ET.Element]:
    return [ET.fromstring(chunk) for chunk in SVG.findall(html)]


def test_an_anonymous_visitor_is_sent_to_log_in() -> None:
    response = Client().get("/charts/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_a_user_without_a_role_is_refused() -> None:
    make_user("nobody", "pw-nobody-1", role=None)
    client = Client()
    client.login(username="nobody", password="pw-nobody-1")
    assert client.get("/charts/").status_code == 403


def test_a_viewer_sees_six_well_formed_charts_per_gateway(viewer: Client) -> None:
    gateway_with_session("gw-eu")
    gateway_with_session("gw-us")
    response = viewer.get("/charts/")
    assert response.status_code == 200
    html = response.content.decode()
    drawn = svgs(html)
    assert len(drawn) == 12
    assert all(svg.find(f"{NS}title") is not None for svg in drawn)
    assert "adminpanel/charts.css" in html
    assert 'style="' not in html.split("<main>")[1]  # colours come from classes


def test_the_data_shows_up_as_bars_and_lines(viewer: Client) -> None:
    _gateway, session = gateway_with_session("gw-eu")
    now = timezone.now()
    flag(session, now)
    skip(session, now)
    run(session, "run-1", now - timedelta(minutes=20))
    html = viewer.get("/charts/?gateway=gw-eu&window=1h").content.decode()
    flags_svg, skips_svg, locks_svg = svgs(html)[:3]
    assert [r.get("class") for r in flags_svg.iter(f"{NS}rect")] == ["s-crit"]
    assert len(list(skips_svg.iter(f"{NS}rect"))) == 1
    [line] = locks_svg.iter(f"{NS}polyline")
    assert len(line.get("points", "").split()) == 60
    assert "1 raised, 0 cleared" in html


def test_a_gateway_filter_shows_only_that_gateway(viewer: Client) -> None:
    gateway_with_session("gw-eu")
    gateway_with_session("gw-us")
    html = viewer.get("/charts/?gateway=gw-us&window=1d").content.decode()
    assert len(svgs(html)) == 6
    assert 'id="chart-' in html and "gw-eu</h2>" not in html
    assert "last day" in html


def test_an_unknown_window_is_a_bad_request(viewer: Client) -> None:
    assert viewer.get("/charts/?window=1w").status_code == 400
    assert viewer.get("/charts/?span=1h").status_code == 400


def test_the_htmx_refresh_gets_the_partial_that_asks_again_every_ten_seconds(
    viewer: Client,
) -> None:
    gateway_with_session("gw-eu")
    response = viewer.get("/charts/?window=1h", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert "<html" not in html
    assert 'id="charts"' in html and 'hx-trigger="every 10s"' in html
    assert 'hx-get="/charts/?window=1h"' in html
    assert len(svgs(html)) == 6
