#!/usr/bin/env python
"""Django's command-line utility for Runboard."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "runboard.settings")
    from runboard.env import SettingError

    try:
        from django.core.management import execute_from_command_line

        execute_from_command_line(sys.argv)
    except SettingError as exc:
        print(f"runboard: bad setting: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
