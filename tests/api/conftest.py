from __future__ import annotations

import pytest

from tests.api.support import role_tokens


@pytest.fixture
def tokens() -> dict[str, str]:
    """role → a live API token of a user in that role (``nobody``: in no group).

    The test module's ``django_db`` mark gives the database.
    """
    return role_tokens()
