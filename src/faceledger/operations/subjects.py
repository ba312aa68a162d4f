"""Enrolled people on the record: enrollment, subjects, erasure, re-embedding."""

from __future__ import annotations

import functools
import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from sqlalchemy.engine import Connection

from faceledger.engine import EnrollReport, Failed, template_task
from faceledger.errors import ConfigError, NotFoundError
from faceledger.gallery.store import Erasure, NewTemplate, SubjectInfo, TemplateInfo
from faceledger.images import ImageSource
from faceledger.ledger.audit import erasure_summary, name_digest
from faceledger.ledger.chain import LedgerEntry
from faceledger.operations.acting import Acting
from faceledger.operations.base import OperationsBase, Recorded
from faceledger.text import free_text, subject_name

BASIS_MAX = 2000
"""The longest legal basis kept, in characters (the ledger entry repeats it)."""


HISTORY_ACTIONS = ("subject.create", "enroll", "watchlist.add", "template.delete")
"""The ledger actions that change a subject's record (its history)."""


def _concerns(result: object, name: str, digest: str) -> bool:
    if not isinstance(result, dict):
        return False
    listed = result.get("subjects")
    return (
        result.get("subject") == name
        or result.get("subject_sha256") == digest
        or (isinstance(listed, list) and name in listed)
    )


class SubjectOperations(OperationsBase):
    # ---- reads --------------------------------------------------------------------------

    def subjects(self) -> list[SubjectInfo]:
        return self.gallery.subjects()

    def subject(self, name: str) -> tuple[SubjectInfo, list[TemplateInfo]]:
        return self.gallery.subject(name)

    def view_template(self, acting: Acting, name: str, template_id: int) -> Recorded[bytes]:
        """A template's stored face crop (PNG); each viewing is recorded. NotFoundError
        when the subject has no such template."""
        if self._no_such_id(template_id):
            raise NotFoundError(f"subject {name!r} has no template {template_id}")
        owner, png = self.gallery.template_crop(template_id)
        if owner != name:
            raise NotFoundError(f"subject {name!r} has no template {template_id}")
        digest = hashlib.sha256(png).hexdigest()
        result = {"subject": name, "template": template_id}
        entry = self._log(acting.record("template.crop.view", result, inputs=[digest]))
        return Recorded(png, entry)

    def subject_history(self, name: str) -> list[LedgerEntry]:
        """The ledger entries that changed this subject's record (oldest first): its
        creation, enrollments, watch-list additions and template deletions. Searches and
        viewings are not among them (they are the audit ledger's, for auditors)."""
        self.subject(name)  # NotFoundError for a name the gallery does not hold
        digest = name_digest(name)
        found = self.ledger.mentioning([name, digest], HISTORY_ACTIONS)
        return [e for e in found if _concerns(e.result, name, digest)]

    def has_subject(self, name: str) -> bool:
        return self.gallery.has_subject(name)

    def model_counts(self) -> dict[str, int]:
        return self.gallery.model_counts()

    def enrollable_name(self, name: str) -> str:
        """The name to enroll ``name`` under: an existing subject's exactly as stored (a
        gallery made before names were checked keeps its names), else a new subject's,
        checked and normalised by :func:`faceledger.text.subject_name` (ConfigError)."""
        return name if self.gallery.has_subject(name) else subject_name(name)

    def require_new_basis(self, names: Sequence[str], basis: str | None) -> None:
        """Refuse before any work when a new subject's name is refused
        (:meth:`enrollable_name`), or new subjects would be enrolled without a basis."""
        new = [s for s in map(self.enrollable_name, names) if not self.gallery.has_subject(s)]
        if new and not free_text(basis, "legal basis", BASIS_MAX):
            shown = ", ".join(new[:5]) + (" ..." if len(new) > 5 else "")
            raise ConfigError(
                f"{len(new)} new subject(s) ({shown}): record the legal basis for enrolling "
                "them with --basis"
            )

    def require_watchlists(self, names: Sequence[str]) -> None:
        """Refuse before any work when a named watch list does not exist."""
        known = {wl.name for wl in self.watchlists.all()}
        missing = [n for n in names if n not in known]
        if missing:
            raise ConfigError(
                f"no watch list named {', '.join(map(repr, missing))}; create it first with: "
                "faceledger watchlists create NAME"
            )

    # ---- writes -------------------------------------------------------------------------

    def enroll(
        self,
        acting: Acting,
        name: str,
        sources: Sequence[ImageSource],
        basis: str | None,
        *,
        largest: bool = False,
        all_or_nothing: bool = False,
        watchlists: Sequence[str] = (),
        progress: Callable[[str], None] | None = None,
        workers: int | None = 1,
        prepared: Iterable[NewTemplate | Failed] | None = None,
    ) -> tuple[EnrollReport, LedgerEntry | None]:
        """Enroll one subject from photos in one transaction with its ledger entry (and its
        watch-list memberships); bad photos are reported. The entry is None when nothing
        was enrolled (nothing changed). A new subject's name is checked first
        (:meth:`enrollable_name`), and the basis cleaned (:func:`faceledger.text.free_text`).
        ``workers``: photos read, detected and embedded at once (None or 0: every core);
        ``prepared``: their templates made already, one per source in order
        (:meth:`enroll_many` makes those of many subjects at once)."""
        name = self.enrollable_name(name)
        basis = free_text(basis, "legal basis", BASIS_MAX)
        lists = list(dict.fromkeys(watchlists))
        if lists:
            self.require_watchlists(lists)
        done: list[LedgerEntry] = []

        def record(conn: Connection, report: EnrollReport) -> None:
            if lists:
                self.watchlists.add(conn, report.subject, lists)
            result: dict[str, object] = {
                "subject": report.subject,
                "created": report.created,
                "templates": len(report.digests),
                "legal_basis": basis or None,
            }
            if lists:
                result["watchlists"] = lists
            entry = acting.record("enroll", result, inputs=report.digests, model=self.model_id)
            done.append(self._log_in(conn, entry))

        with self.inference() as engine:
            report = engine.enroll(
                name,
                sources,
                basis,
                largest=largest,
                all_or_nothing=all_or_nothing,
                progress=progress,
                record=record,
                workers=workers,
                prepared=prepared,
            )
        return report, (done[0] if done else None)

    def enroll_many(
        self,
        acting: Acting,
        plan: Mapping[str, Sequence[ImageSource]],
        basis: str | None,
        *,
        largest: bool = False,
        all_or_nothing: bool = False,
        watchlists: Sequence[str] = (),
        progress: Callable[[str], None] | None = None,
        workers: int | None = 1,
    ) -> Iterator[tuple[EnrollReport, LedgerEntry | None]]:
        """:meth:`enroll` for several subjects (name -> photos), in plan order, each in its
        own transaction with its ledger entry; the photos of all of them are read,
        detected and embedded on ``workers`` workers at once (None or 0: every core), so
        a folder of many people with one photo each keeps every worker busy. Everything
        checked before any work (names, basis for new subjects, watch lists, the
        gallery's model) is checked for all of them before the first photo is read."""
        self.require_new_basis(list(plan), basis)
        if watchlists:
            self.require_watchlists(list(dict.fromkeys(watchlists)))
        with self.inference() as engine:
            engine.gallery.require_model(engine.model_id)
            photos = [photo for sources in plan.values() for photo in sources]
            made = engine.pool(
                functools.partial(template_task, largest=largest),
                workers,
                items=len(photos),
                local=self.inference,
            ).map(photos)
        try:
            for name, sources in plan.items():
                prepared = list(itertools.islice(made, len(sources)))
                yield self.enroll(
                    acting,
                    name,
                    sources,
                    basis,
                    largest=largest,
                    all_or_nothing=all_or_nothing,
                    watchlists=watchlists,
                    progress=progress,
                    prepared=prepared,
                )
        finally:
            made.close()  # a stop part-way stops the workers

    def add_templates(
        self, acting: Acting, name: str, sources: Sequence[ImageSource], *, largest: bool = False
    ) -> tuple[EnrollReport, LedgerEntry | None]:
        """Photos of an existing subject (NotFoundError when there is none)."""
        if not self.gallery.has_subject(name):
            raise NotFoundError(f"no subject named {name!r}: create it with its legal basis first")
        return self.enroll(acting, name, sources, None, largest=largest)

    def create_subject(
        self, acting: Acting, name: str, basis: str, watchlists: Sequence[str] = ()
    ) -> Recorded[SubjectInfo]:
        """A subject with no templates yet, with its legal basis and watch lists. The name
        is checked and normalised (:func:`faceledger.text.subject_name`), the basis cleaned
        (:func:`faceledger.text.free_text`); ConfigError when either is refused."""
        name = subject_name(name)
        basis = free_text(basis, "legal basis", BASIS_MAX, required=True) or ""
        lists = sorted(set(watchlists))
        done: list[LedgerEntry] = []

        def within(conn: Connection, _created: bool) -> None:
            self.watchlists.add(conn, name, lists)
            result = {"subject": name, "legal_basis": basis, "watchlists": lists}
            done.append(self._log_in(conn, acting.record("subject.create", result)))

        info = self.gallery.create_subject(name, basis, within)
        return Recorded(info, done[0])

    def remove_subject(self, acting: Acting, name: str) -> Recorded[Erasure]:
        """Erasure: the subject, its templates and crops, the evidence crops of its events
        and its watch-list memberships; the ledger keeps only hashes and counts."""
        done: list[LedgerEntry] = []
        erased: list[Erasure] = []

        def within(conn: Connection, erasure: Erasure) -> None:
            erased.append(erasure)
            record = acting.record(
                "subject.delete", erasure_summary(erasure), inputs=erasure.source_sha256
            )
            done.append(self._log_in(conn, record))

        self.gallery.remove(name, within)
        self._forget_erased()
        return Recorded(erased[0], done[0])

    def remove_template(self, acting: Acting, name: str, template_id: int) -> Recorded[Erasure]:
        if self._no_such_id(template_id):
            raise NotFoundError(f"subject {name!r} has no template {template_id} in {self.db.name}")
        done: list[LedgerEntry] = []

        def within(conn: Connection, erasure: Erasure) -> None:
            result = {"template": template_id, **erasure_summary(erasure)}
            record = acting.record("template.delete", result, inputs=erasure.source_sha256)
            done.append(self._log_in(conn, record))

        erasure = self.gallery.remove_template(name, template_id, within)
        self._forget_erased()
        return Recorded(erasure, done[0])

    def reembed(self, acting: Acting, workers: int | None = 1) -> Recorded[int]:
        """Re-embed every stored crop with this engine's embedder, one transaction with its
        ledger entry; ``workers``: crops embedded at once (None or 0: every core)."""
        done: list[LedgerEntry] = []

        def record(conn: Connection, count: int) -> None:
            result = {"templates": count, "model": self.model_id}
            done.append(self._log_in(conn, acting.record("gallery.reembed", result,
                                                         model=self.model_id)))  # fmt: skip

        with self.inference() as engine:
            count = engine.reembed(record, workers)
        return Recorded(count, done[0])
