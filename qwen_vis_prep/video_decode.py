"""Video files or bytes -> sampled ``[T, 3, H, W]`` uint8 frames and their metadata (:func:`load_video`).

Which frames to keep is decided by :func:`qwen_vis_prep.sizing.sample_frame_indices` from the stream's frame
count and average frame rate, so the frames match what the chosen Qwen-VL ``rule`` would sample. Only those
frames are decoded into memory:

* PyAV (``decoder="pyav"``): the packets are first demuxed (no decoding) to learn the frame count, every
  frame's presentation time, the keyframes and whether those times step by a constant amount. Frames are
  then decoded in order and every frame that is not wanted is dropped at once; for a constant-frame-rate
  stream whose sampling leaves long gaps, the decoder seeks to the keyframe before each far-away wanted frame
  and tells frames apart by ``round((pts - first_pts) / pts_step)``. A frame's index is its position in
  presentation order, and its timestamp is its own ``pts * time_base`` relative to the stream start.
* Variable frame rate (PyAV): the rule samples positions on the average-rate grid, ``j / fps`` seconds, and
  each becomes the frame shown closest to that time, so frames spread evenly over time, not over frame
  counts (for a constant-rate stream the two are the same frames). Such a stream is decoded from the start.
* TorchCodec (``decoder="torchcodec"``, also ``device="cuda"`` with NVDEC): the wanted frames are fetched
  with ``VideoDecoder.get_frames_at``.
* ``decoder="auto"`` uses TorchCodec when it imports and can open the file, PyAV otherwise.

Frames come out upright: the stream's display-matrix rotation (a multiple of 90 degrees) is applied; mirror
flips in the matrix are not. The declared frame size is checked against
:func:`qwen_vis_prep.io.max_image_pixels` before anything is decoded, each frame bounded like one image;
a clip holds at most ``max_frames`` frames. Every failure to read a file raises
:class:`VideoLoadError`, a :class:`qwen_vis_prep.io.ImageLoadError` whose message starts with the file name.

PyAV is an optional dependency: ``pip install "qwen_vis_prep[video]"``.
"""

from __future__ import annotations

import bisect
import io as _io
import math
import numbers
import os
import warnings
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterator, Literal, Sequence, Union, overload

import torch

from .io import ImageLoadError, check_pixel_count
from .sizing import SAMPLING_RULES, SamplingRule, sample_frame_indices

__all__ = ["DecodedVideo", "VideoLoadError", "VideoMetadata", "VideoSource", "load_video"]

VideoSource = Union[str, os.PathLike, bytes, bytearray, memoryview]
VideoDecoderName = Literal["auto", "pyav", "torchcodec"]

_RULES = SAMPLING_RULES
_DECODERS = ("auto", "pyav", "torchcodec")
_INSTALL_HINT = 'pip install "qwen_vis_prep[video]"'
# Demuxer names under which FFmpeg opens single still images; such files are not videos.
_IMAGE_DEMUXERS = ("image2", "image2pipe")
# Demuxers that render text files as ANSI / binary-text art (FFmpeg opens e.g. any .txt of a few KB with "tty").
_TEXT_DEMUXERS = ("tty", "bin", "adf", "idf", "xbin")
# Seeking is only worth it when some gap between wanted frames is this long.
_SCAN_GAP = 32
# Seek when the keyframe before the next wanted frame lies more than this many frames ahead.
_SEEK_MARGIN = 8


class VideoLoadError(ImageLoadError):
    """A video could not be read or decoded; ``source`` is its name, ``reason`` what went wrong."""


@dataclass(frozen=True)
class VideoMetadata:
    """What was decoded from one video.

    ``fps`` is the stream's average frame rate, ``duration`` its length in seconds and ``total_frames`` its
    frame count (from the container, or from counting packets when the container does not say).
    ``indices`` are the sampled frame indices (presentation order, may repeat) and ``timestamps`` the
    presentation time in seconds of each, relative to the stream start. ``height`` and ``width`` are those of
    the returned frames (after rotation); ``rotation`` is the counter-clockwise angle (0, 90, 180 or 270)
    that was applied to the stored frames to make them upright. ``decoder`` is ``"pyav"`` or
    ``"torchcodec"``. ``variable_frame_rate`` says that the frames were picked by time (PyAV decoder, a
    stream whose presentation times do not step by a constant amount; see the module docstring).
    """

    source: str
    fps: float
    duration: float
    total_frames: int
    indices: list[int]
    timestamps: list[float]
    height: int
    width: int
    rotation: int
    decoder: str = "pyav"
    variable_frame_rate: bool = False


@dataclass(frozen=True)
class DecodedVideo:
    """``frames``: ``[T, 3, H, W]`` uint8 RGB with ``T == len(metadata.indices)``, on the requested device."""

    frames: torch.Tensor
    metadata: VideoMetadata


@dataclass(frozen=True)
class _Options:
    fps: float | None
    num_frames: int | None
    rule: str
    min_frames: int
    max_frames: int
    temporal_patch_size: int
    decoder: str
    device: torch.device


@overload
def load_video(source: VideoSource, *, fps: float | None = ..., num_frames: int | None = ...,
               rule: SamplingRule = ..., min_frames: int = ..., max_frames: int = ...,
               temporal_patch_size: int = ..., decoder: VideoDecoderName = ...,
               device: torch.device | str = ...) -> DecodedVideo: ...


@overload
def load_video(source: Sequence[VideoSource], *, fps: float | None = ..., num_frames: int | None = ...,
               rule: SamplingRule = ..., min_frames: int = ..., max_frames: int = ...,
               temporal_patch_size: int = ..., decoder: VideoDecoderName = ...,
               device: torch.device | str = ...) -> list[DecodedVideo]: ...


def load_video(source: VideoSource | Sequence[VideoSource], *, fps: float | None = None,
               num_frames: int | None = None, rule: SamplingRule = "qwen3-vl", min_frames: int = 4,
               max_frames: int = 768, temporal_patch_size: int = 2, decoder: VideoDecoderName = "auto",
               device: torch.device | str = "cpu") -> DecodedVideo | list[DecodedVideo]:
    """Decode the frames of a video that ``rule`` samples; returns ``frames [T, 3, H, W]`` uint8 + metadata.

    ``source`` is a path, encoded bytes, or a list/tuple of them (then a list comes back, one
    :class:`DecodedVideo` per item; bytes are named ``"<bytes #i>"`` by their position). ``fps`` (frames per
    second to keep) or ``num_frames`` selects the frames through
    :func:`~qwen_vis_prep.sizing.sample_frame_indices` with ``rule``, ``min_frames``, ``max_frames`` and
    ``temporal_patch_size``; give at most one of them. ``decoder`` is ``"auto"``, ``"pyav"`` or
    ``"torchcodec"``; ``device`` is where the frames end up (TorchCodec decodes on it with NVDEC when it is
    a CUDA device; PyAV decodes on the CPU and copies).

    Raises :class:`VideoLoadError` for a file that cannot be read as a video (missing, not a video, no
    video stream, no decodable frames, truncated before a wanted frame, over the pixel limit),
    ``TypeError`` / ``ValueError`` for bad arguments, and ``ImportError`` when the decoder is not installed.
    """
    opts = _check_options(fps, num_frames, rule, min_frames, max_frames, temporal_patch_size, decoder, device)
    if isinstance(source, (list, tuple)):
        for i, item in enumerate(source):
            _check_source(item, f"source[{i}]")
        return [_load_one(item, _name(item, i), opts) for i, item in enumerate(source)]
    _check_source(source, "source")
    return _load_one(source, _name(source, 0), opts)


# ----------------------------------------------------------------------------------------------- arguments


def _check_options(fps: Any, num_frames: Any, rule: Any, min_frames: Any, max_frames: Any,
                   temporal_patch_size: Any, decoder: Any, device: Any) -> _Options:
    if fps is not None:
        if isinstance(fps, bool) or not isinstance(fps, numbers.Real):
            raise TypeError(f"fps must be a number of frames per second or None, got {type(fps).__name__}")
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive finite number of frames per second, got {fps!r}")
        fps = float(fps)
    if num_frames is not None:
        _check_count("num_frames", num_frames)
        num_frames = int(num_frames)
    if fps is not None and num_frames is not None:
        raise ValueError(f"fps and num_frames are mutually exclusive; got fps={fps!r} and "
                         f"num_frames={num_frames!r}, pass one of them")
    for what, value in (("min_frames", min_frames), ("max_frames", max_frames),
                        ("temporal_patch_size", temporal_patch_size)):
        _check_count(what, value)
    min_frames, max_frames, temporal_patch_size = int(min_frames), int(max_frames), int(temporal_patch_size)
    if rule not in _RULES:
        raise ValueError(f"rule must be one of {', '.join(map(repr, _RULES))}, got {rule!r}")
    if decoder not in _DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(map(repr, _DECODERS))}, got {decoder!r}")
    if isinstance(device, bool) or not isinstance(device, (str, torch.device, int)):
        raise TypeError(f"device must be a torch.device, a device string such as 'cpu' or 'cuda', or a CUDA "
                        f"device number; got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda:0', got {device!r} "
                         f"({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asks for CUDA, but torch finds no CUDA device; use device='cpu'")
    return _Options(fps, num_frames, rule, min_frames, max_frames, temporal_patch_size, decoder, dev)


def _check_count(what: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{what} must be >= 1, got {value}")


def _check_source(source: Any, what: str) -> None:
    if not isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be a path (str or os.PathLike), encoded bytes, or a list/tuple of them; "
                        f"got {type(source).__name__}")


def _name(source: Any, i: int) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fsdecode(source)
    return f"<bytes #{i}>"


# ----------------------------------------------------------------------------------------------- dispatch


def _load_one(source: VideoSource, name: str, opts: _Options) -> DecodedVideo:
    src = _prepare_source(source, name)
    if opts.decoder in ("auto", "torchcodec"):
        decoder_cls, why = _torchcodec_decoder()
        if decoder_cls is None:
            if opts.decoder == "torchcodec":
                raise ImportError(f"decoder='torchcodec' needs TorchCodec, which cannot be imported ({why}); "
                                  f"install it (pip install torchcodec) or use decoder='pyav'")
        else:
            try:
                tc = decoder_cls(src, device=str(opts.device) if opts.device.type == "cuda" else "cpu")
            except Exception as e:  # noqa: BLE001 - any failure to open means: not usable for this file
                if opts.decoder == "torchcodec":
                    raise VideoLoadError(name, f"TorchCodec cannot open it: {_reason(e)}") from None
            else:
                return _load_torchcodec(tc, src, name, opts)
    return _load_pyav(src, name, opts)


def _prepare_source(source: VideoSource, name: str) -> str | bytes:
    """A path string that exists and is non-empty, or the encoded bytes (a ``bytes`` copy of a mutable buffer)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise VideoLoadError(name, "empty input (0 bytes)")
        return data
    path = os.fspath(source)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise VideoLoadError(name, "no such file") from None
    except OSError as e:
        raise VideoLoadError(name, f"cannot read ({e.strerror or e})") from None
    if os.path.isdir(path):
        raise VideoLoadError(name, "is a directory, not a video file")
    if st.st_size == 0:
        raise VideoLoadError(name, "empty file (0 bytes)")
    return path if isinstance(path, str) else os.fsdecode(path)


def _reason(e: BaseException) -> str:
    return str(e).strip() or type(e).__name__


def _sample(name: str, total: int, video_fps: float, opts: _Options) -> list[int]:
    try:
        # the rules that sample by time take the duration transformers' decoders report: frames / fps
        return sample_frame_indices(total, video_fps, fps=opts.fps, num_frames=opts.num_frames,
                                    min_frames=opts.min_frames, max_frames=opts.max_frames,
                                    temporal_patch_size=opts.temporal_patch_size,
                                    rule=opts.rule, duration=total / video_fps)  # type: ignore[arg-type]
    except ValueError as e:
        raise VideoLoadError(name, f"cannot sample frames from {total} frames at {video_fps:g} fps: "
                                   f"{e}") from None


def _check_pixels(name: str, height: int, width: int) -> None:
    try:
        check_pixel_count(name, height, width)
    except VideoLoadError:
        raise
    except ImageLoadError as e:
        raise VideoLoadError(name, e.reason) from None


def _positions(indices: list[int]) -> dict[int, list[int]]:
    """Frame index -> the output positions that show it (an index may be sampled more than once)."""
    where: dict[int, list[int]] = {}
    for pos, idx in enumerate(indices):
        where.setdefault(idx, []).append(pos)
    return where


# ----------------------------------------------------------------------------------------------- rotation


def _quarter_turns(degrees: float | None, name: str) -> int:
    """Counter-clockwise quarter turns (0..3) nearest to a display-matrix rotation in degrees."""
    if not degrees:
        return 0
    turns = round(degrees / 90.0)
    if abs(degrees - 90.0 * turns) > 1.0:
        warnings.warn(f"{name}: display rotation of {degrees:g} degrees is not a multiple of 90; applying "
                      f"{(90 * turns) % 360} degrees", stacklevel=4)
    return turns % 4


def _upright(frames: torch.Tensor, turns: int) -> torch.Tensor:
    """``[..., H, W]`` rotated counter-clockwise by ``turns`` quarter turns (``[..., W, H]`` for odd turns)."""
    if turns % 4 == 0:
        return frames
    return torch.rot90(frames, turns % 4, dims=(-2, -1)).contiguous()


# ----------------------------------------------------------------------------------------------- PyAV


def _import_av() -> Any:
    try:
        import av
    except ImportError as e:
        raise ImportError(f"decoding videos needs PyAV, which is not installed: {_INSTALL_HINT}") from e
    return av


@dataclass
class _Scan:
    """What demuxing the whole stream (without decoding) told: packet count, the sorted presentation times
    (``pts``, when every packet has one), whether they step by a constant amount (``constant``), and for such
    a stream on a grid coarse enough to seek by, the first pts, the step and the keyframes' indices."""

    count: int
    pts: list[int] | None = None
    constant: bool = False
    first_pts: int | None = None
    step: float | None = None
    keyframes: list[int] | None = None
    keyframe_pts: list[int] | None = None

    @property
    def seekable(self) -> bool:
        return self.step is not None and bool(self.keyframes)


def _open(av: Any, src: str | bytes, name: str) -> Any:
    try:
        return av.open(src if isinstance(src, str) else _io.BytesIO(src), "r")
    except (av.FFmpegError, OSError) as e:
        raise VideoLoadError(name, f"not a readable video file ({_reason(e)})") from None


def _video_stream(av: Any, container: Any, name: str) -> Any:
    fmt = container.format.name
    if fmt in _IMAGE_DEMUXERS or fmt.endswith("_pipe"):
        raise VideoLoadError(name, f"is a still image ({fmt.removesuffix('_pipe')}), not a video")
    if fmt in _TEXT_DEMUXERS:
        raise VideoLoadError(name, f"is text (FFmpeg's {fmt!r} demuxer would draw it as text art), not a video")
    attached = getattr(getattr(av.stream, "Disposition", None), "attached_pic", 0)
    for stream in container.streams.video:
        if attached and stream.disposition & attached:
            continue
        return stream
    kinds = sorted({s.type for s in container.streams}) or ["none"]
    raise VideoLoadError(name, f"has no video stream (streams found: {', '.join(kinds)})")


def _stream_fps(stream: Any, name: str) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and float(rate) > 0 and math.isfinite(float(rate)):
            return float(rate)
    raise VideoLoadError(name, "the video stream declares no frame rate")


def _scan(av: Any, container: Any, stream: Any) -> _Scan:
    """Demux every packet of ``stream`` (no decoding): count them and look for a constant pts step."""
    pts: list[int] = []
    keys: list[int] = []
    count = 0
    missing_pts = False
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            count += 1
            if packet.pts is None:
                missing_pts = True
            else:
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(packet.pts)
    except av.FFmpegError:
        pass  # a damaged tail: count what could be demuxed; decoding reports what is missing
    scan = _Scan(count)
    if missing_pts or count < 1:
        return scan
    pts.sort()
    scan.pts = pts
    if count < 2:
        scan.constant = True
        return scan
    first, step = pts[0], (pts[-1] - pts[0]) / (count - 1)
    # Constant frame rate: every pts within one tick (a quarter step on a grid of under 4 ticks) of the grid.
    scan.constant = all(abs(p - first - k * step) <= min(1.0, step / 4) for k, p in enumerate(pts))
    if not scan.constant or step < 4:  # seeking tells frames apart by round(): it needs a coarser grid
        return scan
    scan.first_pts, scan.step = first, step
    by_index = {round((p - first) / step): p for p in keys}
    scan.keyframes = sorted(by_index)
    scan.keyframe_pts = [by_index[k] for k in scan.keyframes]
    return scan


def _frames(av: Any, container: Any, stream: Any, errors: list[str]) -> Iterator[Any]:
    """Decoded frames of ``stream``; a decoding error ends the iteration and is noted in ``errors``."""
    it = container.decode(stream)
    while True:
        try:
            frame = next(it)
        except StopIteration:
            return
        except av.FFmpegError as e:
            errors.append(_reason(e))
            return
        yield frame


class _Collector:
    """Receives the wanted decoded frames and writes them, upright, into one ``[T, 3, H, W]`` tensor."""

    def __init__(self, name: str, indices: list[int], fps: float, start_pts: int | None, time_base: Fraction,
                 check_size: bool) -> None:
        self.name, self.fps, self.start_pts, self.time_base = name, fps, start_pts, time_base
        self.where = _positions(indices)
        self.count = len(indices)
        self.times: dict[int, float] = {}
        self.out: torch.Tensor | None = None
        self.turns = 0
        self.check_size = check_size
        self.last: int | None = None  # the highest frame index decoded so far

    def wants(self, idx: int) -> bool:
        return idx in self.where and idx not in self.times

    def offer(self, idx: int, frame: Any) -> None:
        """Frame ``idx`` was decoded: keep it if it is wanted."""
        if self.start_pts is None and self.last is None and frame.pts is not None:
            self.start_pts = frame.pts  # no declared stream start: the first frame decoded from the start
        if self.last is None or idx > self.last:
            self.last = idx
        if self.wants(idx):
            self.add(idx, frame)

    def add(self, idx: int, frame: Any) -> None:
        if self.out is None:
            self.turns = _quarter_turns(getattr(frame, "rotation", 0), self.name)
        img = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
        img = _upright(img, self.turns)
        if self.out is None:
            if self.check_size:
                _check_pixels(self.name, img.shape[1], img.shape[2])
            self.out = torch.empty((self.count, *img.shape), dtype=torch.uint8)
        elif img.shape != self.out.shape[1:]:
            got, first = img.shape, self.out.shape
            raise VideoLoadError(self.name, f"frame {idx} is {got[2]}x{got[1]} but earlier frames are "
                                            f"{first[3]}x{first[2]}; frame sizes that change are not supported")
        for pos in self.where[idx]:
            self.out[pos] = img
        if frame.pts is not None and self.start_pts is not None:
            self.times[idx] = float((frame.pts - self.start_pts) * self.time_base)
        else:
            self.times[idx] = idx / self.fps

    def missing(self) -> list[int]:
        return sorted(i for i in self.where if i not in self.times)


def _load_pyav(src: str | bytes, name: str, opts: _Options) -> DecodedVideo:
    av = _import_av()
    container = _open(av, src, name)
    try:
        stream = _video_stream(av, container, name)
        fps = _stream_fps(stream, name)
        time_base = stream.time_base or Fraction(1, 1)
        scan = _scan(av, container, stream)
        container.close()
        container = _open(av, src, name)
        stream = _video_stream(av, container, name)
        total = int(stream.frames or 0) or scan.count
        if total == 0:
            raise VideoLoadError(name, "the video stream has no frames")
        start_pts = stream.start_time
        if start_pts is None and scan.pts:
            start_pts = scan.pts[0]
        indices = _sample(name, total, fps, opts)
        by_time = not scan.constant and scan.pts is not None and scan.count == total
        if by_time:
            times = [float((p - (start_pts or 0)) * time_base) for p in scan.pts]  # type: ignore[union-attr]
            indices = _nearest_frames(times, [j / fps for j in indices])
        wanted = sorted(set(indices))
        height, width = int(stream.codec_context.height or 0), int(stream.codec_context.width or 0)
        if height and width:
            _check_pixels(name, height, width)
        gaps = [b - a for a, b in zip([-1, *wanted], wanted)]
        duration = _duration(stream, container, total, fps, time_base)
        got = _Collector(name, indices, fps, start_pts, time_base, check_size=not (height and width))
        errors: list[str] = []
        decoded = None
        if scan.seekable and scan.count == total and max(gaps) > _SCAN_GAP:
            stream.codec_context.thread_type = "AUTO"
            decoded = _decode_seeking(av, container, stream, scan, wanted, got, errors)
            if decoded is None:  # the frames were not on the constant pts grid after all
                container.close()
                container = _open(av, src, name)
                stream = _video_stream(av, container, name)
                errors.clear()
        if decoded is None:
            stream.codec_context.thread_type = "AUTO"
            decoded = _decode_sequential(av, container, stream, wanted, got, errors)
    finally:
        container.close()
    missing = got.missing()
    if missing:
        raise VideoLoadError(name, _missing_reason(got, missing, len(wanted), total, errors))
    assert got.out is not None
    frames = got.out.to(opts.device) if opts.device.type != "cpu" else got.out
    timestamps = [got.times[i] for i in indices]
    meta = VideoMetadata(source=name, fps=fps, duration=max(duration, *timestamps), total_frames=total,
                         indices=list(indices), timestamps=timestamps, height=int(frames.shape[-2]),
                         width=int(frames.shape[-1]), rotation=90 * got.turns, decoder="pyav",
                         variable_frame_rate=by_time)
    return DecodedVideo(frames, meta)


def _nearest_frames(times: list[float], targets: list[float]) -> list[int]:
    """For each target time (seconds), the index of the frame whose time (sorted ``times``) is closest;
    the earlier frame on a tie."""
    out = []
    for t in targets:
        i = bisect.bisect_left(times, t)
        if i == len(times) or (i > 0 and t - times[i - 1] <= times[i] - t):
            i -= 1
        out.append(i)
    return out


def _duration(stream: Any, container: Any, total: int, fps: float, time_base: Fraction) -> float:
    if stream.duration:
        return float(stream.duration * time_base)
    if container.duration:
        return container.duration / 1_000_000
    return total / fps


def _decode_sequential(av: Any, container: Any, stream: Any, wanted: list[int], got: _Collector,
                       errors: list[str]) -> int:
    """Decode from the start, frame ``k`` being the ``k``-th one out; returns how many frames were decoded."""
    last = wanted[-1]
    idx = -1
    for frame in _frames(av, container, stream, errors):
        idx += 1
        got.offer(idx, frame)
        if idx >= last:
            break
    return idx + 1


def _decode_seeking(av: Any, container: Any, stream: Any, scan: _Scan, wanted: list[int], got: _Collector,
                    errors: list[str]) -> int | None:
    """Decode a constant-frame-rate stream, seeking to the keyframe before far-away wanted frames.

    Frames are identified by their pts on the stream's constant grid. Returns the number of frames decoded,
    or None when the frames do not sit on that grid (then the caller decodes sequentially instead).
    """
    assert scan.keyframes is not None and scan.keyframe_pts is not None
    assert scan.step is not None and scan.first_pts is not None
    keyframes, step, first = scan.keyframes, scan.step, scan.first_pts
    decoded = 0
    pos = -1  # index of the last frame decoded
    frames: Iterator[Any] | None = None
    for target in wanted:
        if not got.wants(target):
            continue
        k = bisect.bisect_right(keyframes, target) - 1  # the keyframe at or before target
        if frames is not None and (k < 0 or keyframes[k] - pos <= _SEEK_MARGIN):
            seek_at = None  # keep decoding forward
        else:
            seek_at = max(k, 0)
        while True:
            if seek_at is not None:
                try:
                    container.seek(scan.keyframe_pts[seek_at], stream=stream, backward=True, any_frame=False)
                except av.FFmpegError:
                    return None
                frames = _frames(av, container, stream, errors)
                pos = -1
            assert frames is not None
            landed = seek_at is None
            reached = False
            for frame in frames:
                if frame.pts is None:
                    return None
                where = (frame.pts - first) / step
                idx = round(where)
                if abs(where - idx) > 0.25:
                    return None
                decoded += 1
                if not landed:
                    landed = True
                    if idx > target:  # the seek went past the target: try the keyframe before
                        break
                pos = idx
                got.offer(idx, frame)
                if idx >= target:
                    reached = True
                    break
            else:  # the stream ended
                return decoded
            if reached:
                break
            if seek_at is None or seek_at == 0:
                return None
            seek_at -= 1
    return decoded


def _missing_reason(got: _Collector, missing: list[int], wanted: int, total: int, errors: list[str]) -> str:
    if got.last is None:
        text = f"no decodable video frames (the container declares {total})"
    else:
        text = f"decoded {wanted - len(missing)} of the {wanted} wanted frames; "
        if got.last < missing[0]:
            text += (f"decoding ended after frame {got.last} of the {total} the container declares, before "
                     f"wanted frame {missing[0]} (truncated or corrupt file?)")
        else:
            text += f"frame {missing[0]} of the {total} the container declares did not decode (corrupt file?)"
    if errors:
        text += f"; decoder error: {errors[0]}"
    return text


# ----------------------------------------------------------------------------------------------- TorchCodec


def _torchcodec_decoder() -> tuple[Any, str]:
    """``torchcodec.decoders.VideoDecoder`` and ``""``, or ``None`` and why it cannot be imported."""
    try:
        from torchcodec.decoders import VideoDecoder
    except Exception as e:  # noqa: BLE001 - ImportError, or RuntimeError/OSError when its FFmpeg libraries fail
        return None, f"{type(e).__name__}: {_reason(e)}"
    return VideoDecoder, ""


def _load_torchcodec(decoder: Any, src: str | bytes, name: str, opts: _Options) -> DecodedVideo:
    md = decoder.metadata
    fps = getattr(md, "average_fps_from_header", None) or getattr(md, "average_fps", None)
    if not fps or not math.isfinite(float(fps)) or float(fps) <= 0:
        raise VideoLoadError(name, "the video stream declares no frame rate")
    fps = float(fps)
    total = int(getattr(md, "num_frames_from_header", None) or getattr(md, "num_frames", None) or 0)
    if total <= 0:
        raise VideoLoadError(name, "the video stream has no frames")
    indices = _sample(name, total, fps, opts)
    declared_h, declared_w = getattr(md, "height", None), getattr(md, "width", None)
    if declared_h and declared_w:
        _check_pixels(name, int(declared_h), int(declared_w))
    wanted = sorted(set(indices))
    try:
        batch = decoder.get_frames_at(indices=wanted)
    except Exception as e:  # noqa: BLE001 - TorchCodec raises IndexError/RuntimeError for missing frames
        raise VideoLoadError(name, f"could not decode the {len(wanted)} wanted frames of the {total} the "
                                   f"container declares (truncated or corrupt file?): {_reason(e)}") from None
    data = batch.data
    if hasattr(md, "rotation"):
        turns = _quarter_turns(md.rotation, name)  # TorchCodec turns the frames upright itself
    else:
        turns = _probe_rotation(src, name)  # older TorchCodec returns frames as stored
        data = _upright(data, turns)
    if not (declared_h and declared_w):
        _check_pixels(name, int(data.shape[-2]), int(data.shape[-1]))
    row = {idx: r for r, idx in enumerate(wanted)}
    take = torch.tensor([row[i] for i in indices], device=data.device)
    frames = data.index_select(0, take).to(opts.device)
    begin = getattr(md, "begin_stream_seconds_from_header", None) or 0.0
    pts = [float(t) - begin for t in batch.pts_seconds.tolist()]
    duration = getattr(md, "duration_seconds_from_header", None) or getattr(md, "duration_seconds", None)
    meta = VideoMetadata(source=name, fps=fps, duration=float(duration or total / fps), total_frames=total,
                         indices=list(indices), timestamps=[pts[row[i]] for i in indices],
                         height=int(frames.shape[-2]), width=int(frames.shape[-1]), rotation=90 * turns,
                         decoder="torchcodec")
    return DecodedVideo(frames, meta)


def _probe_rotation(src: str | bytes, name: str) -> int:
    """Quarter turns of the first frame's display rotation, read with PyAV (0 when PyAV is not installed)."""
    try:
        import av
    except ImportError:
        warnings.warn(f"{name}: this TorchCodec does not report the display rotation and PyAV is not "
                      f"installed to read it; frames are returned as stored", stacklevel=4)
        return 0
    try:
        with av.open(src if isinstance(src, str) else _io.BytesIO(src), "r") as container:
            stream = _video_stream(av, container, name)
            for frame in container.decode(stream):
                return _quarter_turns(getattr(frame, "rotation", 0), name)
    except (av.FFmpegError, OSError):
        pass
    return 0
