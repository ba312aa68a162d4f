"""The tamper-evident audit ledger: who did what, when, why and what came back."""

from faceledger.ledger.chain import (
    GENESIS,
    Ledger,
    LedgerEntry,
    VerifyReport,
    canonical,
    entry_hash,
)

__all__ = ["GENESIS", "Ledger", "LedgerEntry", "VerifyReport", "canonical", "entry_hash"]
