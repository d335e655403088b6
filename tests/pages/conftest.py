from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client


@pytest.fixture
def viewer(db: None) -> Client:
    User.objects.create_user("viewer", password="pw-viewer-1")
    client = Client()
    client.login(username="viewer", password="pw-viewer-1")
    return client
