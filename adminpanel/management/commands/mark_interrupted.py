"""``manage.py mark_interrupted``: record ``interrupted`` for actions cut off mid-way.

``runweb`` and ``runbridge`` do this at start; this command does it on its own
(after a crash, before looking at the audit log).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from adminpanel.action_outcomes import mark_interrupted


class Command(BaseCommand):
    help = "Give the outcome 'interrupted' to every action intent left without one."

    def handle(self, *args: Any, **options: Any) -> None:
        marked = mark_interrupted()
        self.stdout.write(f"{marked} interrupted action(s) recorded.")
