"""Login throttling: repeated failures lock a user name or a client out, right password too."""

from __future__ import annotations

from typing import Any

import pytest
from axes.models import AccessAttempt
from django.test import Client

from tests.support.users import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _limit(settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 3


def log_in(username: str, password: str, client_addr: str = "10.0.0.1") -> int:
    client = Client(REMOTE_ADDR=client_addr)
    response = client.post("/login/", {"username": username, "password": password})
    return response.status_code


def test_the_right_password_logs_in() -> None:
    make_user("ada", "right-pw-1", role="viewer")
    assert log_in("ada", "right-pw-1") == 302


def test_after_the_limit_the_right_password_from_that_client_is_refused_too() -> None:
    make_user("ada", "right-pw-1", role="viewer")
    assert [log_in("ada", "wrong") for _ in range(3)][:2] == [200, 200]
    assert log_in("ada", "right-pw-1") == 429


def test_a_user_name_under_attack_is_locked_from_every_client() -> None:
    make_user("ada", "right-pw-1", role="viewer")
    for n in range(3):
        log_in("ada", "wrong", client_addr=f"10.0.1.{n}")
    assert log_in("ada", "right-pw-1", client_addr="10.0.9.9") == 429


def test_a_client_guessing_many_user_names_is_locked_out_for_all_of_them() -> None:
    make_user("ada", "right-pw-1", role="viewer")
    for n in range(3):
        log_in(f"guess{n}", "wrong", client_addr="10.0.2.1")
    assert log_in("ada", "right-pw-1", client_addr="10.0.2.1") == 429
    assert log_in("ada", "right-pw-1", client_addr="10.0.2.2") == 302


def test_the_lockout_page_says_what_happened() -> None:
    for _ in range(3):
        log_in("ada", "wrong")
    response = Client(REMOTE_ADDR="10.0.0.1").post("/login/", {"username": "ada", "password": "x"})
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()


def test_failures_are_logged_and_listed_for_the_admin(caplog: pytest.LogCaptureFixture) -> None:
    for _ in range(3):
        log_in("ada", "wrong", client_addr="10.0.3.1")
    messages = [str(r.msg) for r in caplog.records]
    assert sum("login_failed" in m for m in messages) == 3
    assert any("login_locked_out" in m for m in messages)
    attempt = AccessAttempt.objects.get(username="ada")
    assert attempt.failures_since_start == 3 and attempt.ip_address == "10.0.3.1"
    admin = make_user("root", "root-pw-1", role="admin")
    admin.is_staff = admin.is_superuser = True
    admin.save()
    client = Client()
    client.force_login(admin)
    page = client.get("/admin/axes/accessattempt/")
    assert page.status_code == 200 and "10.0.3.1" in page.content.decode()
