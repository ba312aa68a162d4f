"""`faceledger bench shared-db`: two servers and a CLI loop on one PostgreSQL database."""

from __future__ import annotations

import pytest

from faceledger.bench import shared
from faceledger.errors import ConfigError
from tests.conftest import MODELS, SMOKE, need, standin_env


def test_two_servers_and_a_cli_loop_share_one_database_every_action_in_the_ledger(
    pg_url: str,
) -> None:
    need(MODELS)
    options = shared.Options(
        db=pg_url,
        seconds=8,
        servers=2,
        cli_loops=1,
        clients=1,
        identifies=2,
        profile="fast",
        images=need(SMOKE / "identities"),
        settings={
            **standin_env(),
            "FACELEDGER_OFFLINE": "1",
            "FACELEDGER_MODEL_MIRROR": str(MODELS),
        },
    )
    result = shared.run(options)
    samples = [s for p in result.processes for s in p.error_samples]
    assert result.error_count == 0, ([p.errors for p in result.processes], samples, result.logs)
    assert [p.name for p in result.processes] == ["api-0", "api-1", "cli-0"]
    for proc in result.processes:  # each process enrolled, identified and erased
        assert {"enroll", "identify", "subject.delete"} <= set(proc.actions), proc
        assert proc.per_s > 0
    check = result.ledger
    assert check.counts_ok, [t for t in check.tallies if not t.ok]
    assert check.seqs_returned > 0 and check.seqs_distinct and check.seqs_in_ledger
    assert set(check.seqs_missing) <= shared.SEQ_OPTIONAL
    assert check.seqs_unique and check.seqs_contiguous
    assert check.chain_ok, check.chain
    assert check.ok and result.ok
    # every entry of the run is accounted for by some process (or the bench's own keys)
    assert check.entries == sum(t.answered for t in check.tallies)
    assert result.as_json()["ledger"]["ok"] is True


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"servers": 0, "cli_loops": 0}, "at least one process"),
        ({"servers": 9}, "servers"),
        ({"seconds": 601.0}, "seconds"),
        ({"db": "gallery.db"}, "PostgreSQL"),
    ],
)
def test_options_are_checked(change: dict[str, object], message: str) -> None:
    options = shared.Options(images=SMOKE / "identities", **change)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=message):
        options.check()


def _check(**change: object) -> shared.LedgerCheck:
    fields: dict[str, object] = {
        "before": 0,
        "entries": 2,
        "by_action": {"identify": 2},
        "tallies": [shared.Tally("ada", "identify", 2, 2)],
        "seqs_returned": 2,
        "seqs_distinct": True,
        "seqs_in_ledger": True,
        "seqs_missing": {},
        "seqs_unique": True,
        "seqs_contiguous": True,
        "chain_ok": True,
        "chain": "2 entries verified",
    }
    return shared.LedgerCheck(**{**fields, **change})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        {"tallies": [shared.Tally("ada", "identify", 2, 1)]},  # an answer with no entry
        {"tallies": [shared.Tally("ada", "identify", 1, 2)]},  # an entry with no answer
        {"seqs_missing": {"identify": 1}},  # an identify answer without its ledger_seq
        {"seqs_missing": {"subject.create": 1}},  # every answer names its entry
        {"seqs_distinct": False},
        {"seqs_contiguous": False},
        {"chain_ok": False},
    ],
)
def test_the_ledger_check_fails_on_any_mismatch(change: dict[str, object]) -> None:
    assert _check().ok
    assert not _check(**change).ok


def test_the_command_refuses_too_many_servers() -> None:
    from typer.testing import CliRunner

    import faceledger.cli.bench_shared  # noqa: F401  (registers bench shared-db)
    from faceledger.cli.main import app

    result = CliRunner().invoke(app, ["bench", "shared-db", "--servers", "9"])
    assert result.exit_code == 2
    assert "8" in result.stderr  # the bound, in the usage error
