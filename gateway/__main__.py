"""``python -m gateway``: the same command line as ``sonic-gateway``."""

from __future__ import annotations

from gateway.cli import main

raise SystemExit(main())
