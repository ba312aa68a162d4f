"""Cameras on the record: every change to a camera is a ledger entry, in the same
transaction as the change (with the address's credentials masked), and a camera's
decisions are matched only against its own watch lists."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any

from faceledger.gallery.cameras import Camera, CameraSettings, CameraStore
from faceledger.gallery.matcher import Matcher
from faceledger.ledger.chain import LedgerEntry, LedgerRecord
from faceledger.operations.acting import Acting
from faceledger.operations.base import OperationsBase, Recorded


class CameraOperations(OperationsBase):
    @property
    def camera_store(self) -> CameraStore:
        store = self.__dict__.get("_cameras")
        if store is None:
            store = self.__dict__["_cameras"] = CameraStore(self.db)
        return store

    def add_camera(self, acting: Acting, settings: CameraSettings) -> Recorded[Camera]:
        """A new camera, running once a node picks it up. It needs a purpose, a legal
        basis and watch lists that exist (ConfigError / NotFoundError otherwise)."""
        return self._camera_change(
            acting, "camera.add", lambda w: self.camera_store.add(settings, w)
        )

    def set_camera_paused(self, acting: Acting, name: str, paused: bool) -> Recorded[Camera]:
        """Pause (its node stops it within seconds) or resume a camera."""
        action = "camera.pause" if paused else "camera.resume"
        return self._camera_change(
            acting, action, lambda w: self.camera_store.set_paused(name, paused, w)
        )

    def remove_camera(self, acting: Acting, name: str) -> Recorded[Camera]:
        """Delete a camera's record (its events are kept, naming it)."""
        return self._camera_change(
            acting, "camera.remove", lambda w: self.camera_store.remove(name, w)
        )

    def list_cameras(self) -> list[Camera]:
        return self.camera_store.all()

    def camera(self, name: str) -> Camera:
        return self.camera_store.get(name)

    def report_camera_health(self, name: str, node: str, health: dict[str, Any]) -> bool:
        """What a node reports of a camera it runs (operational data: no ledger entry);
        False when the camera was removed meanwhile."""
        at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        return self.camera_store.report_health(name, node, health, at)

    def camera_matcher(self, name: str) -> Matcher:
        """The matcher for a camera's decisions: only the subjects on its watch lists now
        (read on every call, so a list change or an erasure counts at the next decision)."""
        allowed = self.camera_store.allowed_subjects(name)
        with self._matching, self.inference() as engine:  # one catch-up at a time
            return engine.matcher_within(allowed)

    @property
    def _matching(self) -> threading.Lock:
        lock = self.__dict__.get("_matching_lock")
        if lock is None:
            lock = self.__dict__.setdefault("_matching_lock", threading.Lock())
        return lock

    def _camera_change(self, acting: Acting, action: str, change: Any) -> Recorded[Camera]:
        done: list[LedgerEntry] = []

        def record(camera: Camera) -> LedgerRecord:
            return acting.record(action, camera.ledger_view())

        camera: Camera = change(self._hook(record, done))
        return Recorded(camera, done[0])
