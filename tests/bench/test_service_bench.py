"""`faceledger bench service`: a few seconds of real load, and its ledger check, on a
SQLite gallery and on a PostgreSQL one (concurrent appends to the chain from the server's
threads)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceledger.bench import service
from faceledger.cli.main import app
from faceledger.config import load_config
from faceledger.errors import ConfigError
from faceledger.operations import Operations
from tests.conftest import MODELS, SMOKE, need

STANDIN = {
    "FACELEDGER_PROFILE": "fast",
    "FACELEDGER_EMBEDDER": "mobilefacenet",  # runs without PyTorch (CI)
    "FACELEDGER_FLIP": "0",
    "FACELEDGER_OFFLINE": "1",
}


def test_two_clients_for_three_seconds_every_request_in_the_ledger(db_url: str) -> None:
    need(MODELS)
    options = service.Options(
        clients=2,
        seconds=3,
        images=need(SMOKE / "identities"),
        db=db_url,
        settings={**STANDIN, "FACELEDGER_MODEL_MIRROR": str(MODELS)},
    )
    result = service.run(options)
    assert result.error_count == 0, (result.errors, result.server_log)
    assert result.requests > 0 and result.p50_ms is not None
    assert result.model == "mobilefacenet" and result.profile == "fast"
    check = result.ledger
    assert check.entries == check.answered == result.requests + 1  # + the warm-up request
    assert check.seqs_returned == check.answered
    assert check.seqs_distinct and check.seqs_in_ledger
    assert check.chain_ok and check.ok, check.chain
    assert result.as_json()["ledger"]["ok"] is True
    # the benchmark's own keys were made and revoked on the record, by the OS user
    with Operations(load_config(db=db_url)) as ops:
        keys = [e for e in ops.audit_entries() if e.action.startswith("key.")]
        assert ops.audit_verify().ok
        assert all(not k.active for k in ops.list_keys())
    assert [e.action for e in keys] == ["key.create"] * 2 + ["key.revoke"] * 2
    assert {(e.role, e.purpose) for e in keys} == {("cli", service.PURPOSE)}


@pytest.mark.parametrize(
    ("field", "value"), [("clients", 65), ("seconds", 601.0), ("max_requests", 100_001)]
)
def test_options_are_bounded(field: str, value: float, tmp_path: Path) -> None:
    options = service.Options(images=tmp_path, **{field: value})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=field.replace("_", " ")):
        options.check()


def test_cli_refuses_too_many_clients() -> None:
    result = CliRunner().invoke(app, ["bench", "service", "--clients", "65", "--json"])
    assert result.exit_code == 2
    assert "64" in result.stderr  # the bound, in the usage error
