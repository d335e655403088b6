from __future__ import annotations

import sys

from gateway_bridge.simgateway.cli import main

sys.exit(main())
