"""Who is acting, and why: the context every operation on personal data takes."""

from __future__ import annotations

import getpass
from dataclasses import dataclass, replace
from typing import Any

from faceledger.ledger.chain import LedgerRecord

CLI_ROLE = "cli"
"""The role recorded for the operating-system user (the command line, the library)."""


@dataclass(frozen=True)
class Acting:
    """The acting context of an operation: who (actor and role), why (purpose) and for
    which case. Every ledger entry an operation writes is made from it."""

    actor: str
    role: str
    purpose: str | None = None
    case_ref: str | None = None

    @classmethod
    def os_user(cls, purpose: str | None = None, case_ref: str | None = None) -> Acting:
        """The person logged in to this machine (the library's and the CLI's default)."""
        try:
            name = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (some containers)
            name = "unknown-os-user"
        return cls(name, CLI_ROLE, purpose, case_ref)

    def because(self, purpose: str | None, case_ref: str | None = None) -> Acting:
        """The same actor acting for another purpose (and case)."""
        return replace(self, purpose=purpose, case_ref=case_ref)

    def record(
        self,
        action: str,
        result: Any = None,
        *,
        inputs: tuple[str, ...] | list[str] = (),
        model: str | None = None,
    ) -> LedgerRecord:
        """The ledger record of ``action`` done by this actor for this purpose."""
        return LedgerRecord(
            actor=self.actor,
            role=self.role,
            action=action,
            purpose=self.purpose,
            case_ref=self.case_ref,
            inputs=tuple(inputs),
            result=result,
            model=model,
        )
