"""Who is acting, and why: the context every operation on personal data takes."""

from __future__ import annotations

import getpass
from dataclasses import dataclass, replace
from typing import Any

from faceledger.ledger.chain import MAX_TEXT, LedgerRecord
from faceledger.text import free_text

CLI_ROLE = "cli"
"""The role recorded for the operating-system user (the command line, the library)."""
PURPOSE_MAX = MAX_TEXT // 2
"""The longest purpose (or case reference) kept, in characters."""


@dataclass(frozen=True)
class Acting:
    """The acting context of an operation: who (actor and role), why (purpose) and for
    which case. Every ledger entry an operation writes is made from it.

    The purpose and case reference are cleaned on construction (:func:`faceledger.text.
    free_text`): control characters dropped, NFC, stripped; one left blank is ``None``.
    ConfigError when either is longer than :data:`PURPOSE_MAX`."""

    actor: str
    role: str
    purpose: str | None = None
    case_ref: str | None = None

    def __post_init__(self) -> None:
        purpose = free_text(self.purpose, "purpose", PURPOSE_MAX)
        case_ref = free_text(self.case_ref, "case reference", PURPOSE_MAX)
        object.__setattr__(self, "purpose", purpose)  # frozen: set once, here
        object.__setattr__(self, "case_ref", case_ref)

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
