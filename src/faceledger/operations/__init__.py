"""The accountable layer: the only way to act on personal data.

Every operation takes an :class:`Acting` context (who, role, purpose, case) and writes its
ledger entry in the same transaction as its effect; a search writes it before its answer
is returned. The CLI, the REST API and camera nodes are thin layers over
:class:`Operations`: they parse, call and render, and never open a store, a SQL connection
or the ledger themselves. ::

    from faceledger import Acting, Operations, load_config

    with Operations(load_config(profile="fast", db="gallery.db")) as ops:
        me = Acting.os_user(purpose="door access check", case_ref="TICKET-12")
        ops.enroll(me, "ada", [Path("ada.jpg")], "signed consent form 2026-11")
        answer = ops.identify(me, Path("door.jpg"))   # answer.value, answer.entry.seq
"""

from faceledger.operations.acting import CLI_ROLE, Acting
from faceledger.operations.admin import AdminOperations
from faceledger.operations.base import Recorded
from faceledger.operations.cameras import CameraOperations
from faceledger.operations.checkpoints import (
    CheckpointOperations,
    CheckpointReport,
    SignedCheckpoint,
)
from faceledger.operations.events import EventOperations
from faceledger.operations.searches import SearchOperations, digests
from faceledger.operations.subjects import SubjectOperations
from faceledger.operations.video import VideoOperations, VideoRun


class Operations(
    SearchOperations,
    SubjectOperations,
    EventOperations,
    AdminOperations,
    CheckpointOperations,
    VideoOperations,
    CameraOperations,
):
    """Everything that can be done with one gallery's personal data, each on the record.

    ``Operations(config)`` opens the database named by ``config.db`` (a SQLite file or a
    PostgreSQL URL; ``create=False`` refuses a SQLite file that does not exist yet); models
    load on first use or with :meth:`load`."""


__all__ = [
    "CLI_ROLE",
    "Acting",
    "CheckpointReport",
    "Operations",
    "Recorded",
    "SignedCheckpoint",
    "VideoRun",
    "digests",
]
