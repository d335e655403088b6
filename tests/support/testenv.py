"""Loaded with ``-p`` before Django's settings: what every test run's environment needs.

Settings refuse to start without a secret key unless DEBUG; a test run gets a
random one of its own (subprocesses the tests start inherit it).
"""

from __future__ import annotations

import os
import secrets

os.environ.setdefault("RUNBOARD_SECRET_KEY", secrets.token_urlsafe(50))
