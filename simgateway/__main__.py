from __future__ import annotations

import sys

from simgateway.cli import main

sys.exit(main())
