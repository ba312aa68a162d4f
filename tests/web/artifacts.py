"""Where the browser tests keep what they saw: screenshots of every page and what
axe-core found on each (one module, imported by the fixtures and the page helpers alike)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(os.environ.get("FACELEDGER_ARTIFACTS", ROOT / "build" / "test-artifacts")) / "web"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 812}
SERIOUS = ("serious", "critical")
FOUND: dict[str, dict[str, Any]] = {}
"""Page name -> what axe-core found on it (violations by impact)."""
