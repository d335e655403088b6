"""``manage.py simgateway``: the simulated gateways' CLI (simgateway.cli)."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from simgateway import cli


class Command(BaseCommand):
    help = "Run simulated OpenClaw gateways (with Runboard's registry methods) until stopped."

    def add_arguments(self, parser: ArgumentParser) -> None:
        cli.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        cli.run(options)
