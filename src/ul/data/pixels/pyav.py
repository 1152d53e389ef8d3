"""The video decoder: PyAV (FFmpeg, bundled in its wheel) on the CPU, for every container and codec.

Which backend runs where: this one, on the CPU, for every video (MP4, WebM, AVI, MKV, MOV, GIF and
APNG alike). DALI's video decoder (`fn.decoders.video`, nvidia-dali-cuda120 2.4.0 as installed)
decodes only VP8, VP9 and MJPEG on the CPU; H.264, H.265, MPEG-4 and AV1 need its `mixed` (NVDEC,
GPU) backend, and it reads no GIF or APNG. So a DALI CPU path would cover few real files, and the
GPU path is a separate issue; `pixels.device=cuda` is refused for video until it exists.

A clip is the file's first `frames` frames at `fps` (0 = every frame, at the file's own rate; else
the frame nearest in time to each of 0, 1/fps, 2/fps, ... from the first frame, so a 30 fps file
read at 15 fps keeps every other frame). Each frame goes through decode_pil's rules exactly as an
image does (BT.601 integer grey, `pad` or `resize` geometry), giving uint8 C×T×H×W. A file that is
not a video, is corrupt or cut short, is too large per frame (imagecheck's pixel budget) or has
fewer frames than the clip needs raises ClipError with the reason. A cut-off file is found where
FFmpeg sees it: an MP4/MOV whose index (`moov`) is missing, or any file whose last packet is
incomplete; the whole file is read for that (its packets only, not decoded past the clip).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ul.data.pixels import imagecheck
from ul.data.pixels.pil import transform

BACKEND = "pyav"


class ClipError(ValueError):
    """A file that cannot give a clip; the message is the reason (the caller names the file)."""


def _reason(err: Exception) -> str:
    """FFmpeg's own words for an av error (without the path it repeats), else the exception."""
    strerror = getattr(err, "strerror", None)
    if strerror:
        return f"not a readable video ({type(err).__name__}: {strerror})"
    return f"{type(err).__name__}: {err}".strip().rstrip(":")


class _Packets:
    """The stream's packets, read once: decoded while the clip is picked, then read to the end of
    the file, so that a file cut short is an error even when its first frames are intact (FFmpeg
    flags the packet it could read only in part; a cut exactly between packets is not seen)."""

    def __init__(self, container, stream):
        self.stream = stream
        self.packets = container.demux(stream)

    def _checked(self, packet):
        if packet.is_corrupt:
            raise ClipError(f"cut short or corrupt (a packet at {packet.pos or 0:,} bytes is incomplete)")
        return packet

    def frames(self) -> Iterator:
        for packet in self.packets:  # the last one is FFmpeg's empty flush packet
            yield from self._checked(packet).decode()

    def finish(self) -> None:
        for packet in self.packets:
            self._checked(packet)


def _timed(packets: _Packets) -> Iterator[tuple[float, object]]:
    """(seconds from the first frame, frame) in presentation order; a frame without a timestamp
    is placed one native frame interval after the previous one."""
    stream = packets.stream
    rate = float(stream.average_rate or stream.guessed_rate or 25)
    first = last = None
    for frame in packets.frames():
        t = frame.time
        if t is None:
            t = 0.0 if last is None else last + 1.0 / rate
        first = t if first is None else first
        last = t
        yield t - first, frame


def pick(timed: Iterator[tuple[float, object]], frames: int, fps: float) -> list:
    """The clip's frames: the first `frames` (fps 0), or the nearest frame to each k/fps."""
    out: list = []
    if fps <= 0:
        for _, frame in timed:
            out.append(frame)
            if len(out) == frames:
                return out
        raise ClipError(f"has only {len(out)} frame(s); a clip needs {frames} (data.frames)")
    prev, gap = None, 0.0
    for t, frame in timed:
        if prev is not None:
            gap = t - prev[0]
            while len(out) < frames and len(out) / fps <= (prev[0] + t) / 2:
                out.append(prev[1])
        if len(out) == frames:
            return out
        prev = (t, frame)
    while prev is not None and len(out) < frames and len(out) / fps <= prev[0] + gap / 2:
        out.append(prev[1])
    if len(out) < frames:
        ends = 0.0 if prev is None else prev[0]
        raise ClipError(
            f"ends after {ends:.3f} s; a clip of {frames} frames at {fps:g} fps needs {(frames - 1) / fps:.3f} s"
        )
    return out


def _convert(frames: list, resolution: int, channels: int, resize_mode: str) -> np.ndarray:
    """Picked frames → uint8 C×T×H×W (a frame picked twice is converted once)."""
    done: dict[int, np.ndarray] = {}
    for f in frames:
        if id(f) not in done:
            done[id(f)] = transform(f.to_image(), resolution, channels, resize_mode)
    return np.stack([done[id(f)] for f in frames], axis=1)


def _within_budget(width: int, height: int, resolution: int) -> None:
    budget = imagecheck.pixel_budget(resolution)
    if width * height > budget:
        raise ClipError(
            f"{width}×{height} = {width * height:,} pixels per frame, over the budget of {budget:,} "
            f"for resolution {resolution}; downscale it first"
        )


def _source(src: str | Path | bytes):
    """What av.open reads: a file name, or a file's bytes (a member of a raw shard)."""
    return io.BytesIO(src) if isinstance(src, bytes) else str(src)


def load(src: str | Path | bytes, frames: int, fps: float, resolution: int, channels: int, resize_mode: str):
    """Decode one file (its name or its bytes) to a uint8 C×frames×resolution×resolution clip;
    raises ClipError."""
    import av

    try:
        with av.open(_source(src), mode="r") as container:
            if not container.streams.video:
                raise ClipError("not a video (the file has no video stream)")
            stream = container.streams.video[0]
            _within_budget(stream.codec_context.width, stream.codec_context.height, resolution)
            packets = _Packets(container, stream)
            picked = pick(_timed(packets), frames, fps)
            for f in picked:
                _within_budget(f.width, f.height, resolution)
            clip = _convert(picked, resolution, channels, resize_mode)
            packets.finish()
            return clip
    except ClipError:
        raise
    except Exception as err:  # av.error.*, and anything else a hostile file provokes
        raise ClipError(_reason(err)) from None


def probe(src: str | Path | bytes) -> tuple[int, int]:
    """(width, height) of the first video stream from the header; (0, 0) when unreadable."""
    import av

    try:
        with av.open(_source(src), mode="r") as container:
            stream = container.streams.video[0]
            return stream.codec_context.width, stream.codec_context.height
    except Exception:  # decode names unreadable files; here they only fail the size check
        return (0, 0)
