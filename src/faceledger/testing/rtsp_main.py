"""An RTSP camera for tests: serves one MP4's H.264 video, looped forever, at real time.

Run by the *system* Python (``/usr/bin/python3``, which has PyGObject and GstRtspServer),
never imported by faceledger: it uses only ``gi`` and the standard library.

::

    /usr/bin/python3 rtsp_main.py PORT MOUNT CLIP.mp4 [USER PASSWORD]

It prints ``ready`` on stdout once the server listens on 127.0.0.1:PORT, serves
``rtsp://127.0.0.1:PORT/MOUNT`` (with basic authentication when USER and PASSWORD are
given) and runs until SIGTERM or SIGINT.

The clip is not decoded: its H.264 access units are read once into memory (through
``qtdemux ! h264parse`` to Annex B byte-stream with SPS/PPS before every keyframe) and fed
to every media's ``appsrc`` in order, looping, with timestamps shifted by the clip's
duration each lap so they keep increasing. The server's sinks sync to the clock, so the
stream runs at real time and the CPU cost is a few percent of a core. The factory is
shared: every client of the mount sees the same stream (as with a real camera).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from dataclasses import dataclass

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

LOAD_TIMEOUT_S = 30
"""The longest reading the clip into memory may take."""

_ROLE = "camera-user"


@dataclass(frozen=True)
class Unit:
    """One H.264 access unit of the clip: Annex B bytes, its time and whether it is a
    keyframe (times in nanoseconds from the clip's start)."""

    data: bytes
    pts: int
    duration: int
    keyframe: bool


@dataclass(frozen=True)
class Clip:
    """The clip's access units in decoding order, their caps and the clip's duration."""

    units: tuple[Unit, ...]
    caps: str
    duration: int


def load_clip(path: str) -> Clip:
    """Read every H.264 access unit of the MP4 at ``path`` into memory (no decoding)."""
    pipeline = Gst.parse_launch(
        "filesrc name=file ! qtdemux ! h264parse config-interval=-1 ! "
        "video/x-h264,stream-format=byte-stream,alignment=au ! "
        "appsink name=sink sync=false emit-signals=false max-buffers=0"
    )
    pipeline.get_by_name("file").set_property("location", path)
    sink = pipeline.get_by_name("sink")
    units: list[Unit] = []
    caps = ""
    deadline = time.monotonic() + LOAD_TIMEOUT_S
    pipeline.set_state(Gst.State.PLAYING)
    try:
        while not sink.get_property("eos"):
            sample = sink.emit("try-pull-sample", Gst.SECOND // 10)
            if sample is not None:
                caps = caps or sample.get_caps().to_string()
                units.append(_unit(sample.get_buffer()))
                continue
            _raise_on_error(pipeline, path)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path}: not read in {LOAD_TIMEOUT_S} s")
        _raise_on_error(pipeline, path)
    finally:
        pipeline.set_state(Gst.State.NULL)
    if not units:
        raise RuntimeError(f"{path}: no H.264 video could be read")
    return Clip(tuple(_rebased(units)), caps, _duration(units))


def _unit(buffer: Gst.Buffer) -> Unit:
    ok, info = buffer.map(Gst.MapFlags.READ)
    if not ok:
        raise RuntimeError("cannot map a buffer of the clip")
    try:
        data = bytes(info.data)
    finally:
        buffer.unmap(info)
    pts = buffer.pts if buffer.pts != Gst.CLOCK_TIME_NONE else buffer.dts
    duration = buffer.duration if buffer.duration != Gst.CLOCK_TIME_NONE else 0
    keyframe = not buffer.has_flags(Gst.BufferFlags.DELTA_UNIT)
    return Unit(data, pts, duration, keyframe)


def _rebased(units: list[Unit]) -> list[Unit]:
    """The units with times counted from the first one (a clip may not start at 0)."""
    start = units[0].pts
    return [Unit(u.data, u.pts - start, u.duration, u.keyframe) for u in units]


def _duration(units: list[Unit]) -> int:
    """The clip's length: past the last unit, by its duration or the mean frame step."""
    first, last = units[0].pts, units[-1].pts
    step = last and (last - first) // max(len(units) - 1, 1)
    return last - first + (units[-1].duration or step or Gst.SECOND // 25)


def _raise_on_error(pipeline: Gst.Pipeline, path: str) -> None:
    message = pipeline.get_bus().pop_filtered(Gst.MessageType.ERROR)
    if message is not None:
        error, debug = message.parse_error()
        raise RuntimeError(f"{path}: {error.message} ({debug})")


class Feeder:
    """Feeds one media's ``appsrc`` with the clip's units, looping, on ``need-data``."""

    def __init__(self, clip: Clip) -> None:
        self.clip = clip
        self.index = 0
        self.lap = 0
        self.lock = threading.Lock()

    def need_data(self, appsrc: Gst.Element, _length: int) -> None:
        with self.lock:
            unit = self.clip.units[self.index]
            buffer = Gst.Buffer.new_wrapped(unit.data)
            buffer.pts = buffer.dts = unit.pts + self.lap * self.clip.duration
            buffer.duration = unit.duration
            if not unit.keyframe:
                buffer.set_flags(Gst.BufferFlags.DELTA_UNIT)
            self.index += 1
            if self.index == len(self.clip.units):
                self.index, self.lap = 0, self.lap + 1
        appsrc.emit("push-buffer", buffer)


def make_factory(clip: Clip) -> GstRtspServer.RTSPMediaFactory:
    """A shared media factory whose every media plays ``clip`` in a loop."""
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        "( appsrc name=src format=time is-live=false max-bytes=2000000 "
        f'caps="{clip.caps}" ! h264parse config-interval=-1 ! video/x-h264,alignment=au ! '
        "rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )
    factory.set_shared(True)

    def configure(_factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        appsrc = media.get_element().get_by_name("src")
        appsrc.connect("need-data", Feeder(clip).need_data)

    factory.connect("media-configure", configure)
    return factory


def protect(
    server: GstRtspServer.RTSPServer,
    factory: GstRtspServer.RTSPMediaFactory,
    user: str,
    password: str,
) -> None:
    """Basic authentication: only ``user`` with ``password`` may open the mount."""
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken.new()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, _ROLE)
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    server.set_auth(auth)
    factory.add_role_from_structure(
        Gst.Structure.new_from_string(
            f"{_ROLE}, {GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS}=(boolean)true, "
            f"{GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT}=(boolean)true"
        )
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve an MP4's H.264 over RTSP, looped.")
    parser.add_argument("port", type=int)
    parser.add_argument("mount")
    parser.add_argument("clip")
    parser.add_argument("user", nargs="?")
    parser.add_argument("password", nargs="?")
    args = parser.parse_args(argv)
    if (args.user is None) != (args.password is None):
        parser.error("give both USER and PASSWORD, or neither")
    if not args.mount.startswith("/"):
        args.mount = "/" + args.mount
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    Gst.init(None)
    try:
        clip = load_clip(args.clip)
    except RuntimeError as exc:
        sys.stderr.write(f"rtsp_main: {exc}\n")
        return 1
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = make_factory(clip)
    if args.user is not None:
        protect(server, factory, args.user, args.password)
    server.get_mount_points().add_factory(args.mount, factory)
    loop = GLib.MainLoop()
    if server.attach(None) == 0:
        sys.stderr.write(f"rtsp_main: cannot listen on 127.0.0.1:{args.port}\n")
        return 1
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
