"""Redaction's second pass: the input decoded again and written with the faces hidden.

Every frame is re-encoded (libx264, else mpeg4) with the input's presentation times and
time base; 4:2:0 frames are hidden plane by plane, so their colours pass through without a
conversion. Audio packets are copied unchanged, in file order. A read error ends the copy
with the frames before it (``Written.broken``); a write error is an InputError.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from faceledger.errors import ConfigError, InputError
from faceledger.types import FloatArray
from faceledger.video.redaction.hide import blur_regions, even_boxes
from faceledger.video.redaction.keep import hidden_boxes
from faceledger.video.redaction.plan import Plan
from faceledger.video.redaction.settings import X264_OPTIONS, ProgressFn
from faceledger.video.redaction.stream import Clock, reason, rotate
from faceledger.video.source import open_container


def _planes_yuv420(frame: Any, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w, h = frame.width, frame.height
    flat = frame.to_ndarray().reshape(-1)
    y = flat[: h * w].reshape(h, w)
    u = flat[h * w : h * w + (h // 2) * (w // 2)].reshape(h // 2, w // 2)
    v = flat[h * w + (h // 2) * (w // 2) :].reshape(h // 2, w // 2)
    return rotate(y, k), rotate(u, k), rotate(v, k)


def _redacted_frame(frame: Any, plan: Plan, boxes: FloatArray, method: str, yuv: bool) -> Any:
    import av

    k = plan.rotation
    width, height = plan.size
    if yuv:
        y, u, v = _planes_yuv420(frame, k)
        if len(boxes):
            full_range = frame.format.name == "yuvj420p" or int(frame.color_range or 0) == 2
            even = even_boxes(boxes, width, height)
            y = blur_regions(y, even, method, fill=0 if full_range else 16)
            u = blur_regions(u, even / 2, method, fill=128)
            v = blur_regions(v, even / 2, method, fill=128)
        data = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(-1, width)
        out = av.VideoFrame.from_ndarray(data, format=frame.format.name)
    else:
        rgb = rotate(frame.to_ndarray(format="rgb24"), k)
        if len(boxes):
            rgb = blur_regions(rgb, boxes, method)
        out = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    if yuv:
        for name in ("color_range", "colorspace", "color_primaries", "color_trc"):
            with contextlib.suppress(AttributeError, ValueError, TypeError):
                setattr(out, name, getattr(frame, name))
    return out


def _video_codec() -> str:
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


@dataclass
class Written:
    """What pass 2 wrote: frames, faces hidden (summed over frames), codec, audio streams."""

    frames: int = 0
    faces: int = 0
    codec: str = ""
    audio: int = 0
    broken: str | None = None
    fps: float = 0.0


class Writer:
    """The output file: a re-encoded video stream and copies of the input's audio streams."""

    def __init__(self, tmp: Path, dst: Path, in_video: Any, in_audio: list[Any], plan: Plan):
        import av

        self.dst = dst
        self.codec = _video_codec()
        try:
            self.out = av.open(str(tmp), mode="w")
        except (av.FFmpegError, ValueError, OSError) as exc:
            raise InputError(str(dst), f"cannot write a video here ({reason(exc)})") from None
        try:
            self.rate = in_video.average_rate or in_video.guessed_rate or Fraction(25)
            self.time_base: Fraction = in_video.time_base or Fraction(1, 90000)
            self.video = self._video_stream(in_video, plan.size)
            self.audio: dict[int, Any] = {}
            for stream in in_audio:
                self.audio[stream.index] = self.out.add_stream_from_template(stream)
        except (av.FFmpegError, ValueError) as exc:
            self.abort()
            raise InputError(str(dst), f"cannot write this video ({reason(exc)})") from None

    def _video_stream(self, in_video: Any, size: tuple[int, int]) -> Any:
        width, height = size
        stream: Any = self.out.add_stream(self.codec, rate=self.rate)
        stream.width, stream.height = width, height
        even = width % 2 == 0 and height % 2 == 0
        in_fmt = in_video.codec_context.pix_fmt
        if self.codec == "libx264":
            stream.options = dict(X264_OPTIONS)
            if in_fmt in ("yuv420p", "yuvj420p") and even:
                stream.pix_fmt = in_fmt  # the planes pass through: no colour conversion
            else:
                stream.pix_fmt = "yuv420p" if even else "yuv444p"
        else:
            stream.pix_fmt = "yuv420p"
            stream.bit_rate = int(min(width * height * float(self.rate) * 0.25, 50_000_000))
            if self.time_base.denominator > 65535:  # mpeg4 allows at most 16-bit time bases
                self.time_base = Fraction(1, min(round(float(self.rate) * 1000), 65535))
        stream.codec_context.time_base = self.time_base
        stream.time_base = self.time_base
        for name in ("color_range", "colorspace", "color_primaries", "color_trc"):
            with contextlib.suppress(AttributeError, ValueError, TypeError):
                setattr(stream.codec_context, name, getattr(in_video.codec_context, name))
        return stream

    def write_audio(self, packet: Any) -> None:
        packet.stream = self.audio[packet.stream.index]
        self.out.mux(packet)

    def write_video(self, frame: Any, pts: int, time_base: Fraction) -> None:
        frame.pts = pts if time_base == self.time_base else round(pts * time_base / self.time_base)
        frame.time_base = self.time_base
        for packet in self.video.encode(frame):
            self.out.mux(packet)

    def close(self) -> None:
        for packet in self.video.encode(None):
            self.out.mux(packet)
        self.out.close()

    def abort(self) -> None:
        import av

        with contextlib.suppress(av.FFmpegError, OSError):
            self.out.close()


def write_video(
    plan: Plan,
    *,
    src: Path,
    tmp: Path,
    dst: Path,
    kept: dict[int, set[int]],
    method: str,
    progress: ProgressFn | None,
) -> Written:
    """Pass 2: decode ``src`` again and write the redacted copy to ``tmp``."""
    import av

    container = open_container(str(src))
    try:
        in_video = container.streams.video[0]
        in_video.thread_type = "AUTO"
        in_audio = list(container.streams.audio)
        writer = Writer(tmp, dst, in_video, in_audio, plan)
        written = Written(codec=writer.codec, audio=len(in_audio), fps=float(writer.rate))
        try:
            _encode_all(
                container, writer, written, plan, kept=kept, method=method, progress=progress
            )
            writer.close()
        except av.FFmpegError as exc:
            writer.abort()
            hint = "; an .mkv output accepts more audio codecs" if in_audio else ""
            raise InputError(str(dst), f"cannot write the video ({reason(exc)}){hint}") from None
        except BaseException:
            writer.abort()
            raise
    finally:
        container.close()
    return written


def _encode_all(
    container: Any,
    writer: Writer,
    written: Written,
    plan: Plan,
    *,
    kept: dict[int, set[int]],
    method: str,
    progress: ProgressFn | None,
) -> None:
    in_video = container.streams.video[0]
    clock = Clock(in_video)
    total = len(plan.times)
    yuv_format: str | None = None
    for kind, item in _demuxed(container, in_video, list(container.streams.audio), written):
        if kind == "audio":
            writer.write_audio(item)
            continue
        if written.frames >= total:
            continue  # pass 1 stopped here (a broken input); audio may still follow
        if written.frames == 0:
            yuv_format = item.format.name if item.format.name in ("yuv420p", "yuvj420p") else None
        yuv = item.format.name == yuv_format and item.width % 2 == 0 and item.height % 2 == 0
        pts = clock.pts(item)
        boxes, faces = hidden_boxes(plan, kept, written.frames)
        writer.write_video(_redacted_frame(item, plan, boxes, method, yuv), pts, clock.time_base)
        written.faces += faces
        written.frames += 1
        if progress is not None:
            progress("writing", written.frames, total)


def _demuxed(
    container: Any, video: Any, audio: list[Any], written: Written
) -> Iterator[tuple[str, Any]]:
    """('audio', packet) and ('video', decoded frame) in file order; a read error ends the
    iteration and is recorded in ``written.broken`` (errors of writing are not caught here)."""
    import av

    frames = 0
    try:
        for packet in container.demux(video, *audio):
            if packet.stream.type == "audio":
                if packet.dts is not None:
                    yield "audio", packet
                continue
            for frame in packet.decode():
                frames += 1
                yield "video", frame
    except av.FFmpegError as exc:
        written.broken = f"video broken after frame {frames} ({reason(exc)})"


def check_video_output(tmp: Path, dst: Path) -> None:
    """Fail before the long first pass when no video can be written under ``dst``'s name."""
    import av

    try:
        av.open(str(tmp), mode="w").close()
    except ValueError:
        raise ConfigError(
            f"{dst}: cannot tell the video format from the name; end it in .mp4 or .mkv"
        ) from None
    except (av.FFmpegError, OSError) as exc:
        raise InputError(str(dst), f"cannot write a video here ({reason(exc)})") from None
