"""Front ends (CLI, REST API, and later the web console and camera nodes) are thin layers
over ``faceledger.operations``: they never write the ledger, open a store or a SQL
connection, and import nothing of ``sqlalchemy`` or ``faceledger.db``.

The check reads each module's source (no import needed), so a front-end module that
breaks the rule fails here whether or not any test runs its code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "faceledger"
FRONT_ENDS = ("cli", "api", "web", "network")
"""Packages under src/faceledger that face users (those that exist are checked)."""
FORBIDDEN_MODULES = ("sqlalchemy", "psycopg", "sqlite3", "alembic", "faceledger.db")
STORES = frozenset(
    {"Gallery", "Ledger", "EventStore", "Reviews", "WatchLists", "KeyStore", "Database",
     "write_txn", "run_retention", "append_in"}
)  # fmt: skip
"""Names that open a store or write the ledger: only ``faceledger.operations`` uses them."""


def violations(source: str, name: str = "<module>") -> list[str]:
    """What in ``source`` breaks the front-end rule, one line each (empty when none)."""
    found = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
            names: list[str] = []
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module]
            names = [alias.name for alias in node.names]
        else:
            continue
        for module in modules:
            if any(module == bad or module.startswith(bad + ".") for bad in FORBIDDEN_MODULES):
                found.append(f"{name}:{node.lineno}: imports {module}")
        if modules and modules[0].startswith("faceledger"):
            for imported in names:
                if imported in STORES:
                    found.append(f"{name}:{node.lineno}: imports {imported} from {modules[0]}")
    return found


def front_end_modules() -> list[Path]:
    return sorted(
        p for pkg in FRONT_ENDS if (SRC / pkg).is_dir() for p in (SRC / pkg).rglob("*.py")
    )


def test_there_are_front_ends_to_check() -> None:
    names = {p.parent.name for p in front_end_modules()}
    assert {"cli", "api"} <= names


@pytest.mark.parametrize("path", front_end_modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_front_end_module_reaches_data_only_through_operations(path: Path) -> None:
    assert violations(path.read_text(encoding="utf-8"), str(path.relative_to(SRC))) == []


@pytest.mark.parametrize(
    "line",
    [
        "import sqlalchemy as sa",
        "from sqlalchemy.engine import Connection",
        "from faceledger.db import Database",
        "from faceledger.db.engine import write_txn",
        "from faceledger.gallery.store import Gallery",
        "from faceledger.ledger import Ledger",
        "import psycopg",
    ],
)
def test_the_check_fails_a_front_end_module_that_reaches_past_operations(line: str) -> None:
    """The rule bites: a real front-end module with one such import added is refused."""
    module = SRC / "cli" / "main.py"
    source = module.read_text(encoding="utf-8")
    assert violations(source) == []
    broken = source.replace("from __future__ import annotations\n",
                            f"from __future__ import annotations\n\n{line}\n", 1)  # fmt: skip
    assert broken != source
    found = violations(broken, "cli/main.py")
    assert found and all(f.startswith("cli/main.py:") for f in found)


def test_operations_may_use_the_stores() -> None:
    """The rule is about front ends: the accountable layer itself is where stores live."""
    source = (SRC / "operations" / "base.py").read_text(encoding="utf-8")
    assert violations(source) != []
