from __future__ import annotations

import pytest
from django.test import Client

from tests.support.users import make_user


@pytest.fixture
def viewer(db: None) -> Client:
    make_user("viewer", "pw")
    client = Client()
    client.login(username="viewer", password="pw")
    return client
