"""qwen_vis_prep.video_decode.load_video against independent references.

Clips are encoded here with PyAV (libx264 at qp 0 in yuv444p, or FFV1 in Matroska) so every frame carries a
known picture. The references are the same files decoded fully and sequentially with PyAV in this file,
``transformers.video_utils.load_video`` (its PyAV backend) for the same indices, and
``qwen_vis_prep.sizing.sample_frame_indices`` for which indices are expected.
"""

from __future__ import annotations

import hashlib
import sys
import types
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")

import qwen_vis_prep as qvp  # noqa: E402
import qwen_vis_prep.video_decode as vd  # noqa: E402
from qwen_vis_prep.io import ImageLoadError, set_max_image_pixels  # noqa: E402
from qwen_vis_prep.sizing import sample_frame_indices  # noqa: E402
from qwen_vis_prep.video_decode import DecodedVideo, VideoLoadError, VideoMetadata, load_video  # noqa: E402

W, H = 64, 48


# ----------------------------------------------------------------------------------------------- helpers


def picture(k: int, h: int = H, w: int = W) -> np.ndarray:
    """Frame ``k``: red = 10k mod 256, green = 10 * (k // 25), a blue block in the top-left corner only."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (10 * k) % 256
    img[..., 1] = 10 * (k // 25)
    img[: h // 2, : w // 3, 2] = 200
    return img


def encode(path: Path, n: int, *, codec: str = "libx264", rate: int = 25, pts_ms: list[int] | None = None,
           rotation: int | None = None, matrix: list[int] | None = None, gop: int | None = None,
           faststart: bool = False) -> Path:
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = W, H, "yuv444p"
        opts = {"qp": "0"} if codec == "libx264" else {}
        if gop is not None:
            opts["g"] = str(gop)
        s.options = opts
        if pts_ms is not None:
            s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            s.set_display_rotation(rotation)
        if matrix is not None:
            s.set_display_matrix(matrix)
        for k in range(n):
            frame = av.VideoFrame.from_ndarray(picture(k), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[k], Fraction(1, 1000)
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def reference(path: Path, partial: bool = False) -> tuple[torch.Tensor, list[float], list[int]]:
    """Every frame of ``path`` decoded sequentially by PyAV: ``[N, 3, H, W]``, pts in seconds, rotations
    (``partial``: up to the first decoding error)."""
    frames, times, rotations = [], [], []
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        try:
            for f in c.decode(stream):
                frames.append(torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1))
                times.append(float(f.pts * stream.time_base))
                rotations.append(f.rotation)
        except av.FFmpegError:
            if not partial:
                raise
    return torch.stack(frames), times, rotations


def hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy()


def assert_content(frames: torch.Tensor, indices: list[int]) -> None:
    """The frames show the pictures they were encoded from (within the YUV round trip)."""
    for img, k in zip(frames, indices):
        diff = np.abs(hwc(img).astype(int) - picture(k).astype(int))
        assert diff.max() <= 2, (k, diff.max())


def name_error(excinfo: pytest.ExceptionInfo, name: str) -> None:
    assert isinstance(excinfo.value, VideoLoadError) and isinstance(excinfo.value, ImageLoadError)
    assert str(excinfo.value).startswith(f"{name}: "), str(excinfo.value)
    assert excinfo.value.source == name


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, torch.Tensor, list[float]]:
    path = encode(tmp_path_factory.mktemp("v") / "clip.mp4", 40)
    frames, times, _ = reference(path)
    assert frames.shape == (40, 3, H, W)
    return path, frames, times


@pytest.fixture(scope="module")
def long_clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("long")
    return {"mp4": encode(d / "long.mp4", 300, gop=10), "mkv": encode(d / "long.mkv", 300, codec="ffv1")}


# ----------------------------------------------------------------------------------------------- sampling

SAMPLINGS = [
    ("qwen2-vl", {"fps": 2.0}),
    ("qwen2-vl", {"num_frames": 6}),
    ("qwen2-vl", {}),
    ("qwen3-vl", {"fps": 2.0}),
    ("qwen3-vl", {"num_frames": 7}),
    ("qwen3-vl", {"num_frames": 60}),  # more than the clip has: indices repeat
    ("qwen3-vl", {}),
    ("qwen-vl-utils", {"fps": 4.0}),
    ("qwen-vl-utils", {"num_frames": 8}),
]


@pytest.mark.parametrize("rule,kwargs", SAMPLINGS)
def test_sampling_matches_sample_frame_indices(clip, rule, kwargs):
    path, ref, ref_times = clip
    out = load_video(path, rule=rule, decoder="pyav", **kwargs)
    assert isinstance(out, DecodedVideo) and isinstance(out.metadata, VideoMetadata)
    expected = sample_frame_indices(40, 25.0, rule=rule, **kwargs)
    md = out.metadata
    assert md.indices == expected
    assert (md.source, md.fps, md.total_frames, md.height, md.width, md.rotation) == (str(path), 25.0, 40, H, W, 0)
    assert md.duration == pytest.approx(40 / 25)
    assert out.frames.dtype == torch.uint8 and out.frames.shape == (len(expected), 3, H, W)
    assert torch.equal(out.frames, ref[expected])
    assert_content(out.frames, expected)
    assert md.timestamps == pytest.approx([ref_times[i] for i in expected], abs=1e-9)
    if len(set(expected)) < len(expected):
        first = expected.index(expected[-1])
        assert torch.equal(out.frames[first], out.frames[-1])


def test_constant_rate_timestamps_are_index_over_fps(clip):
    path, _, _ = clip
    md = load_video(path, num_frames=11, decoder="pyav").metadata
    assert max(abs(t - i / 25) for t, i in zip(md.timestamps, md.indices)) < 1e-6


@pytest.mark.parametrize("rule,kwargs", [("qwen2-vl", {"num_frames": 6}), ("qwen3-vl", {"fps": 2.0}),
                                         ("qwen-vl-utils", {"num_frames": 8})])
def test_matches_transformers_load_video(clip, rule, kwargs):
    video_utils = pytest.importorskip("transformers.video_utils")
    path, _, _ = clip
    ours = load_video(str(path), rule=rule, decoder="pyav", **kwargs)
    indices = ours.metadata.indices
    assert len(set(indices)) == len(indices)  # transformers' PyAV reader keeps each index once
    video, meta = video_utils.load_video(str(path), backend="pyav",
                                         sample_indices_fn=lambda metadata, **_: np.array(indices))
    assert torch.equal(ours.frames, torch.from_numpy(video).permute(0, 3, 1, 2))
    assert list(meta.frames_indices) == indices
    assert (meta.total_num_frames, meta.fps) == (ours.metadata.total_frames, ours.metadata.fps)


# ----------------------------------------------------------------------------------------------- seeking


@pytest.mark.parametrize("kind", ["mp4", "mkv"])
def test_sparse_sampling_seeks_and_matches_sequential(long_clips, kind, monkeypatch):
    path = long_clips[kind]
    ref, ref_times, _ = reference(path)
    results = []
    seeking = vd._decode_seeking

    def spy(*args, **kwargs):
        results.append(seeking(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(vd, "_decode_seeking", spy)
    seeked = {}
    for kwargs in ({"num_frames": 5}, {"fps": 0.5, "rule": "qwen2-vl"}):
        out = load_video(path, decoder="pyav", **kwargs)
        md = out.metadata
        assert md.total_frames == 300 and md.fps == 25.0
        assert md.indices == sample_frame_indices(300, 25.0, **kwargs)
        assert torch.equal(out.frames, ref[md.indices])
        assert_content(out.frames, md.indices)
        assert md.timestamps == pytest.approx([ref_times[i] for i in md.indices], abs=1e-9)
        assert max(abs(t - i / 25) for t, i in zip(md.timestamps, md.indices)) < 1e-6
        seeked[tuple(kwargs.items())] = out
    # the seeking decoder ran and decoded far fewer frames than a sequential pass would
    assert len(results) == 2 and all(r is not None and r < 150 for r in results), results
    # the same calls without seeking (sequential decode) give the same frames and timestamps
    monkeypatch.setattr(vd, "_SCAN_GAP", 10**9)
    for key, out in seeked.items():
        seq = load_video(path, decoder="pyav", **dict(key))
        assert torch.equal(seq.frames, out.frames) and seq.metadata == out.metadata
    assert len(results) == 2


@pytest.mark.parametrize("sequential", [False, True], ids=["seeking", "sequential"])
def test_memory_holds_only_the_sampled_frames(long_clips, monkeypatch, sequential):
    """A 300-frame clip sampled at 2 fps: only the 24 sampled frames are ever converted to RGB and kept
    (every other decoded frame is dropped as it comes), whether the decoder seeks or decodes in order."""
    import av

    if sequential:
        monkeypatch.setattr(vd, "_SCAN_GAP", 10**9)
    converted = []
    to_ndarray = av.VideoFrame.to_ndarray

    def counting(frame, *args, **kwargs):
        converted.append(frame.pts)
        return to_ndarray(frame, *args, **kwargs)

    monkeypatch.setattr(av.VideoFrame, "to_ndarray", counting)
    out = load_video(long_clips["mp4"], fps=2.0, rule="qwen2-vl", decoder="pyav")
    assert out.frames.shape[0] == len(out.metadata.indices) == 24
    assert len(converted) == len(set(out.metadata.indices)) == 24


def test_seeking_falls_back_when_frames_leave_the_pts_grid(long_clips, monkeypatch):
    path = long_clips["mp4"]
    ref, ref_times, _ = reference(path)
    scan, results = vd._scan, []

    def wrong_step(*args, **kwargs):
        found = scan(*args, **kwargs)
        found.step = found.step * 1.5  # as if the pts grid were coarser than it is
        return found

    seeking = vd._decode_seeking
    monkeypatch.setattr(vd, "_scan", wrong_step)
    monkeypatch.setattr(vd, "_decode_seeking", lambda *a, **k: results.append(seeking(*a, **k)) or results[-1])
    out = load_video(path, num_frames=6, decoder="pyav")
    assert results == [None]  # the seeking decoder gave up; the sequential one decoded the clip
    assert torch.equal(out.frames, ref[out.metadata.indices])
    assert out.metadata.timestamps == pytest.approx([ref_times[i] for i in out.metadata.indices], abs=1e-9)


def test_container_without_frame_count_counts_packets(long_clips):
    with av.open(str(long_clips["mkv"])) as c:
        assert c.streams.video[0].frames == 0  # Matroska does not store a frame count
    assert load_video(long_clips["mkv"], num_frames=4, decoder="pyav").metadata.total_frames == 300


@pytest.mark.parametrize("name, codec", [("clip.mp4", "libx264"), ("clip.mkv", "ffv1"), ("clip.avi", "ffv1")])
def test_constant_frame_rate_is_not_taken_for_variable(tmp_path, name, codec):
    """Constant-rate files, including AVI's time base of one tick per frame, are picked by frame index."""
    path = encode(tmp_path / name, 30, codec=codec)
    md = load_video(path, num_frames=6, decoder="pyav").metadata
    assert not md.variable_frame_rate
    assert md.indices == sample_frame_indices(30, 25.0, num_frames=6)
    assert md.timestamps == pytest.approx([i / 25 for i in md.indices], abs=1e-6)


def nearest_written_frames(pts_ms: list[int], fps: float, positions: list[int]) -> list[int]:
    """The frame shown closest to each time ``j / fps`` (the earlier one on a tie), from the written pts."""
    written = np.asarray(pts_ms, dtype=np.float64) / 1000
    return [int(np.argmin(np.abs(written - j / fps))) for j in positions]


def test_variable_frame_rate_frames_are_picked_by_time(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    pts_ms = np.cumsum(np.r_[0, rng.choice([20, 40, 55, 130], size=79)]).tolist()
    path = encode(tmp_path / "vfr.mp4", 80, pts_ms=pts_ms)
    ref, ref_times, _ = reference(path)
    assert ref_times == pytest.approx([p / 1000 for p in pts_ms], abs=1e-9)
    called = []
    monkeypatch.setattr(vd, "_decode_seeking", lambda *a, **k: called.append(1))
    for kwargs in ({"num_frames": 4}, {"num_frames": 21}, {"fps": 3.0}):
        out = load_video(path, decoder="pyav", **kwargs)
        md = out.metadata
        assert md.total_frames == 80 and md.variable_frame_rate
        assert md.fps == pytest.approx(float(av.open(str(path)).streams.video[0].average_rate))
        positions = sample_frame_indices(80, md.fps, **kwargs)
        assert md.indices == nearest_written_frames(pts_ms, md.fps, positions)
        assert md.indices != positions  # by frame counts the picks would differ on this stream
        assert torch.equal(out.frames, ref[md.indices])
        assert_content(out.frames, md.indices)
        assert md.timestamps == pytest.approx([pts_ms[i] / 1000 for i in md.indices], abs=1e-9)
        assert md.duration >= md.timestamps[-1]
    assert called == []  # pts steps are not constant: never seek


def test_variable_frame_rate_burst_then_slow(tmp_path):
    """60 frames 10 ms apart, then 20 frames 500 ms apart: sampled at 2 fps, the frames spread over the 10 s
    (by frame counts, 13 of 18 would fall in the first 0.6 s), and transformers' metadata puts each frame's
    time within half an average frame of its own pts."""
    from qwen_vis_prep.hf_adapter import _hf_metadata

    pts_ms = list(range(0, 600, 10)) + [600 + 500 * k for k in range(20)]
    path = encode(tmp_path / "burst.mp4", 80, pts_ms=pts_ms)
    md = load_video(path, fps=2.0, decoder="pyav").metadata
    assert md.variable_frame_rate
    assert md.indices == nearest_written_frames(pts_ms, md.fps, sample_frame_indices(80, md.fps, fps=2.0))
    assert sum(t < 0.6 for t in md.timestamps) <= 2
    hf = _hf_metadata(md)
    assert [i / hf.fps for i in hf.frames_indices] == pytest.approx(md.timestamps, abs=0.5 / md.fps)


# ----------------------------------------------------------------------------------------------- rotation


def ccw(a: np.ndarray) -> np.ndarray:
    """``[H, W, C]`` turned a quarter counter-clockwise: the top-right corner goes to the top-left."""
    return np.ascontiguousarray(a.transpose(1, 0, 2)[::-1])


def cw(a: np.ndarray) -> np.ndarray:
    """``[H, W, C]`` turned a quarter clockwise: the top-left corner goes to the top-right."""
    return np.ascontiguousarray(a.transpose(1, 0, 2)[:, ::-1])


IPHONE_PORTRAIT = [0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30]  # tkhd matrix of a phone clip shown 90 deg clockwise


@pytest.mark.parametrize("how,raw,applied,turn", [
    ({"rotation": 90}, 90, 90, ccw),
    ({"rotation": -90}, -90, 270, cw),
    ({"rotation": 180}, -180, 180, lambda a: np.ascontiguousarray(a[::-1, ::-1])),
    ({"matrix": IPHONE_PORTRAIT}, -90, 270, cw),
])
def test_display_rotation_is_applied(tmp_path, how, raw, applied, turn):
    path = encode(tmp_path / "rot.mp4", 12, **how)
    ref, _, rotations = reference(path)
    assert set(rotations) == {raw}  # what PyAV reads back from the container
    out = load_video(path, num_frames=4, decoder="pyav")
    md = out.metadata
    assert md.rotation == applied
    assert (md.height, md.width) == ((W, H) if applied % 180 else (H, W))
    assert out.frames.shape[-2:] == (md.height, md.width)
    for img, k in zip(out.frames, md.indices):
        assert np.array_equal(hwc(img), turn(hwc(ref[k])))
    if turn is cw:  # the blue corner block (top-left as stored) ends up top-right
        assert hwc(out.frames[0])[0, -1, 2] > 190 and hwc(out.frames[0])[0, 0, 2] < 10


def test_upright_on_synthetic_input():
    a = torch.arange(2 * 3 * 4 * 5, dtype=torch.int32).reshape(2, 3, 4, 5)
    for turns, fn in [(0, lambda x: x), (1, ccw), (2, lambda x: x[::-1, ::-1]), (3, cw), (-1, cw), (5, ccw)]:
        got = vd._upright(a, turns)
        for i in range(2):
            assert np.array_equal(hwc(got[i]), np.ascontiguousarray(fn(hwc(a[i])))), turns


# ----------------------------------------------------------------------------------------------- inputs


def test_bytes_and_list_inputs(clip, tmp_path):
    path, ref, _ = clip
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    from_bytes = load_video(data, num_frames=6, decoder="pyav")
    assert from_bytes.metadata.source == "<bytes #0>"
    from_path = load_video(path, num_frames=6, decoder="pyav")
    assert torch.equal(from_bytes.frames, from_path.frames)
    assert from_bytes.metadata.timestamps == from_path.metadata.timestamps
    buf = bytearray(data)
    assert torch.equal(load_video(buf, num_frames=6, decoder="pyav").frames, from_path.frames)
    assert bytes(buf) == data and hashlib.sha256(data).hexdigest() == digest

    other = encode(tmp_path / "other.mkv", 10, codec="ffv1")
    items = [str(path), data, other]
    snapshot = list(items)
    outs = load_video(items, num_frames=4, decoder="pyav")
    assert items == snapshot and hashlib.sha256(items[1]).hexdigest() == digest
    assert isinstance(outs, list) and len(outs) == 3
    assert [o.metadata.source for o in outs] == [str(path), "<bytes #1>", str(other)]
    assert torch.equal(outs[0].frames, outs[1].frames)
    assert torch.equal(outs[0].frames, ref[outs[0].metadata.indices])
    assert outs[2].metadata.total_frames == 10
    assert_content(outs[2].frames, outs[2].metadata.indices)
    assert [o.metadata.indices for o in load_video(tuple(items), num_frames=4, decoder="pyav")] == \
        [o.metadata.indices for o in outs]
    assert load_video([], num_frames=4) == []


@pytest.mark.cuda
def test_device_cuda(clip):
    path, ref, _ = clip
    out = load_video(path, num_frames=6, decoder="pyav", device="cuda")
    assert out.frames.is_cuda and torch.equal(out.frames.cpu(), ref[out.metadata.indices])


# ----------------------------------------------------------------------------------------------- errors


def test_missing_empty_and_directory(tmp_path):
    missing = str(tmp_path / "nope.mp4")
    with pytest.raises(VideoLoadError) as e:
        load_video(missing)
    name_error(e, missing)
    assert "no such file" in str(e.value)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ImageLoadError) as e:
        load_video(empty, decoder="pyav")
    name_error(e, str(empty))
    assert "empty" in str(e.value)
    with pytest.raises(VideoLoadError) as e:
        load_video(b"")
    name_error(e, "<bytes #0>")
    with pytest.raises(VideoLoadError) as e:
        load_video(tmp_path)
    name_error(e, str(tmp_path))


def test_not_a_video(tmp_path):
    import PIL.Image

    png = tmp_path / "image.png"
    PIL.Image.fromarray(picture(3)).save(png)
    with pytest.raises(VideoLoadError) as e:
        load_video(png, decoder="pyav")
    name_error(e, str(png))
    assert "image" in str(e.value)
    noise = np.random.default_rng(1).bytes(4096)
    with pytest.raises(VideoLoadError) as e:
        load_video(noise, decoder="pyav")
    name_error(e, "<bytes #0>")
    with pytest.raises(VideoLoadError) as e:
        load_video([encode(tmp_path / "ok.mp4", 8).read_bytes(), noise], num_frames=4, decoder="pyav")
    name_error(e, "<bytes #1>")


def test_text_file_is_not_a_video(tmp_path):
    """FFmpeg opens a text file of a few KB as ANSI art (a 640x400 'video'); it is refused as text."""
    notes = tmp_path / "notes.txt"
    notes.write_text("frame rate and duration of the clips, one line each\n" * 100)
    with pytest.raises(VideoLoadError) as e:
        load_video(notes, decoder="pyav")
    name_error(e, str(notes))
    assert "is text" in str(e.value) and "not a video" in str(e.value)
    with pytest.raises(VideoLoadError) as e:  # as bytes there is no extension to pick that demuxer
        load_video(notes.read_bytes(), decoder="pyav")
    name_error(e, "<bytes #0>")


def write_silence(container, stream) -> None:
    """Four frames of mono silence into an AAC ``stream`` of ``container``, flushed."""
    for i in range(4):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, i * 1024
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def test_audio_only(tmp_path):
    path = tmp_path / "audio.m4a"
    with av.open(str(path), "w") as c:
        write_silence(c, c.add_stream("aac", rate=16000))
    with pytest.raises(VideoLoadError) as e:
        load_video(path, decoder="pyav")
    name_error(e, str(path))
    assert "no video stream" in str(e.value) and "audio" in str(e.value)


def test_video_stream_with_no_frames(tmp_path):
    """A Matroska file whose video stream got no packets (audio only in practice)."""
    path = tmp_path / "empty_video.mkv"
    with av.open(str(path), "w") as c:
        v = c.add_stream("ffv1", rate=25)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        write_silence(c, c.add_stream("aac", rate=16000))
        for packet in v.encode():
            c.mux(packet)
    with av.open(str(path)) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
    with pytest.raises(VideoLoadError) as e:
        load_video(path, decoder="pyav")
    name_error(e, str(path))
    assert "the video stream has no frames" in str(e.value)


@pytest.mark.parametrize("n", [1, 7, 33])
def test_odd_frame_counts(tmp_path, n):
    """Files with an odd number of frames: all of them when asked for all, and the rule's 2 fps sample."""
    path = encode(tmp_path / f"odd{n}.mp4", n)
    ref, times, _ = reference(path)
    assert ref.shape[0] == n
    for rule, kwargs in (("qwen3-vl", {"num_frames": n}), ("qwen3-vl", {"fps": 2.0}), ("qwen3-vl", {})):
        out = load_video(path, rule=rule, decoder="pyav", **kwargs)
        expected = sample_frame_indices(n, 25.0, rule=rule, **kwargs)
        assert out.metadata.indices == expected and out.metadata.total_frames == n
        assert torch.equal(out.frames, ref[expected])
        assert out.metadata.timestamps == pytest.approx([times[i] for i in expected], abs=1e-9)


def test_truncated_files(tmp_path, monkeypatch):
    # moov at the end (the default): cutting the file loses the index, so it no longer opens as a video
    full = encode(tmp_path / "clip.mp4", 30).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full[: len(full) // 2])
    with pytest.raises(VideoLoadError) as e:
        load_video(cut, decoder="pyav")
    name_error(e, str(cut))

    # moov first: the container still declares 30 frames; cut inside the frame data
    fast = encode(tmp_path / "fast.mp4", 30, faststart=True).read_bytes()
    mdat = fast.index(b"mdat") + 4
    half = tmp_path / "half.mp4"
    half.write_bytes(fast[: mdat + (len(fast) - mdat) // 2])
    with pytest.raises(VideoLoadError) as e:
        load_video(half, num_frames=10, decoder="pyav")
    name_error(e, str(half))
    assert "of the 10 wanted frames" in str(e.value) and "30" in str(e.value)
    # a long clip, sparse sampling (the seeking decoder): the same report
    fast = encode(tmp_path / "long.mp4", 300, gop=10, faststart=True).read_bytes()
    mdat = fast.index(b"mdat") + 4
    long_half = tmp_path / "long_half.mp4"
    long_half.write_bytes(fast[: mdat + (len(fast) - mdat) // 2])
    with pytest.raises(VideoLoadError) as e:
        load_video(long_half, num_frames=5, decoder="pyav")
    name_error(e, str(long_half))
    assert "decoded 3 of the 5 wanted frames" in str(e.value) and "300" in str(e.value)
    # when every wanted frame lies before the cut, the truncation does not matter
    monkeypatch.setattr(vd, "sample_frame_indices", lambda *args, **kwargs: [0, 50, 100, 50])
    ref, _, _ = reference(long_half, partial=True)
    assert 100 < len(ref) < 300
    out = load_video(long_half, num_frames=4, decoder="pyav")
    assert out.metadata.total_frames == 300 and out.metadata.indices == [0, 50, 100, 50]
    assert torch.equal(out.frames, ref[[0, 50, 100, 50]])
    # nothing left of the frame data: no decodable frames at all
    head = tmp_path / "head.mp4"
    head.write_bytes(fast[:mdat])  # (the 300-frame clip's header)
    with pytest.raises(VideoLoadError) as e:
        load_video(head, decoder="pyav")
    name_error(e, str(head))
    assert "no decodable video frames (the container declares 300)" in str(e.value)


def test_pixel_limit(clip, monkeypatch):
    path, _, _ = clip
    previous = set_max_image_pixels(H * W)  # one frame's worth: the limit bounds each frame, like one image
    try:
        assert load_video(path, num_frames=8, decoder="pyav").frames.shape[0] == 8
        set_max_image_pixels(H * W - 1)
        with pytest.raises(VideoLoadError) as e:
            load_video(path, num_frames=2, decoder="pyav")
        name_error(e, str(path))
        assert f"declares {W}x{H} = {W * H} pixels" in str(e.value)
    finally:
        set_max_image_pixels(previous)


@pytest.mark.parametrize("kwargs,exc,words", [
    ({"fps": 2.0, "num_frames": 4}, ValueError, "mutually exclusive"),
    ({"fps": 0}, ValueError, "fps must be a positive"),
    ({"fps": -1.0}, ValueError, "fps must be a positive"),
    ({"fps": float("nan")}, ValueError, "fps must be a positive"),
    ({"fps": "2"}, TypeError, "got str"),
    ({"num_frames": 0}, ValueError, "num_frames must be >= 1"),
    ({"num_frames": 2.5}, TypeError, "num_frames must be an int, got float"),
    ({"rule": "qwen4"}, ValueError, "'qwen4'"),
    ({"decoder": "ffmpeg"}, ValueError, "'ffmpeg'"),
    ({"device": "gpu7"}, ValueError, "'gpu7'"),
    ({"max_frames": 0}, ValueError, "max_frames"),
])
def test_bad_arguments(clip, kwargs, exc, words):
    path, _, _ = clip
    with pytest.raises(exc) as e:
        load_video(path, **kwargs)
    assert words in str(e.value)
    assert not isinstance(e.value, ImageLoadError)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where torch finds no CUDA device")
def test_cuda_device_without_cuda_is_refused_before_decoding(clip, monkeypatch):
    path, _, _ = clip
    monkeypatch.setattr("qwen_vis_prep.video_decode._load_one", lambda *a: pytest.fail("decoded anyway"))
    with pytest.raises(ValueError, match="'cuda' asks for CUDA, but torch finds no CUDA device"):
        load_video(path, device="cuda")


def test_bad_source_types(clip):
    path, _, _ = clip
    with pytest.raises(TypeError, match="source must be a path .* got int"):
        load_video(3)
    with pytest.raises(TypeError, match=r"source\[1\] must be a path .* got NoneType"):
        load_video([path, None])
    with pytest.raises(VideoLoadError):
        load_video(path, num_frames=44, rule="qwen2-vl", decoder="pyav")  # more frames than the clip has


# ----------------------------------------------------------------------------------------------- decoders


def test_missing_decoders(clip, monkeypatch):
    path, ref, _ = clip
    monkeypatch.setitem(sys.modules, "torchcodec", None)  # import torchcodec -> ImportError
    with pytest.raises(ImportError, match="torchcodec"):
        load_video(path, decoder="torchcodec")
    auto = load_video(path, num_frames=4)
    assert auto.metadata.decoder == "pyav" and torch.equal(auto.frames, ref[auto.metadata.indices])
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ImportError, match=r'pip install "qwen_vis_prep\[video\]"'):
        load_video(path, decoder="pyav")


class _FakeBatch:
    def __init__(self, data: torch.Tensor, pts: list[float]) -> None:
        self.data, self.pts_seconds = data, torch.tensor(pts, dtype=torch.float64)


def fake_torchcodec(monkeypatch, *, reports_rotation: bool, fail_open: bool = False) -> list[dict]:
    """Install a stand-in ``torchcodec.decoders`` that follows TorchCodec's public API, built on PyAV."""
    calls: list[dict] = []

    class Metadata:
        def __init__(self, path_or_bytes):
            import io

            with av.open(path_or_bytes if isinstance(path_or_bytes, str) else io.BytesIO(path_or_bytes)) as c:
                s = c.streams.video[0]
                self.average_fps_from_header = float(s.average_rate)
                self.num_frames_from_header = s.frames
                self.duration_seconds_from_header = float(s.duration * s.time_base)
                self.begin_stream_seconds_from_header = 0.0
                self.width, self.height = s.width, s.height
            if reports_rotation:
                self.rotation = None

    class VideoDecoder:
        def __init__(self, source, device="cpu"):
            if fail_open:
                raise RuntimeError("Could not load libtorchcodec")
            calls.append({"device": device, "bytes": isinstance(source, bytes)})
            self.source, self.metadata = source, Metadata(source)

        def get_frames_at(self, indices):
            calls[-1]["indices"] = list(indices)
            import io

            src = self.source if isinstance(self.source, str) else io.BytesIO(self.source)
            frames, times, rots = [], [], []
            with av.open(src) as c:
                s = c.streams.video[0]
                for f in c.decode(s):
                    frames.append(torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1))
                    times.append(float(f.pts * s.time_base))
                    rots.append(f.rotation)
            data = torch.stack([frames[i] for i in indices])
            if reports_rotation and rots[0]:
                self.metadata.rotation = float(rots[0])
                data = vd._upright(data, round(rots[0] / 90))
            return _FakeBatch(data, [times[i] for i in indices])

    package = types.ModuleType("torchcodec")
    decoders = types.ModuleType("torchcodec.decoders")
    decoders.VideoDecoder = VideoDecoder
    package.decoders = decoders
    monkeypatch.setitem(sys.modules, "torchcodec", package)
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", decoders)
    return calls


@pytest.mark.parametrize("reports_rotation", [True, False])
def test_torchcodec_path_matches_pyav(clip, tmp_path, monkeypatch, reports_rotation):
    path, _, _ = clip
    calls = fake_torchcodec(monkeypatch, reports_rotation=reports_rotation)
    for kwargs in ({"num_frames": 60}, {"fps": 4.0, "rule": "qwen-vl-utils"}):
        tc = load_video(path, decoder="auto", **kwargs)
        py = load_video(path, decoder="pyav", **kwargs)
        assert tc.metadata.decoder == "torchcodec" and py.metadata.decoder == "pyav"
        assert torch.equal(tc.frames, py.frames)
        for field in ("indices", "fps", "total_frames", "height", "width", "rotation", "source"):
            assert getattr(tc.metadata, field) == getattr(py.metadata, field), field
        assert tc.metadata.timestamps == pytest.approx(py.metadata.timestamps, abs=1e-9)
        assert calls[-1]["indices"] == sorted(set(py.metadata.indices))  # each frame fetched once
    assert load_video(path.read_bytes(), num_frames=4, decoder="torchcodec").metadata.source == "<bytes #0>"
    assert calls[-1]["bytes"] and calls[-1]["device"] == "cpu"

    rotated = encode(tmp_path / "rot.mp4", 12, rotation=-90)
    tc = load_video(rotated, num_frames=4, decoder="torchcodec")
    py = load_video(rotated, num_frames=4, decoder="pyav")
    assert tc.metadata.rotation == py.metadata.rotation == 270
    assert torch.equal(tc.frames, py.frames)


def real_torchcodec():
    """TorchCodec's decoder class where TorchCodec is installed and its FFmpeg libraries load, else a skip."""
    found, why = vd._torchcodec_decoder()
    if found is None:
        pytest.skip(f"TorchCodec cannot be used here ({why})")
    return found


def test_real_torchcodec_matches_pyav(clip, long_clips, tmp_path):
    """With TorchCodec installed: the same frames (both convert with FFmpeg), indices, times and rotation as
    the PyAV path, for H.264 and FFV1, dense and sparse samples, bytes, and a rotated file."""
    real_torchcodec()
    rotated = encode(tmp_path / "rot.mp4", 12, rotation=-90)
    cases = [(clip[0], {"num_frames": 60}), (clip[0], {"fps": 4.0, "rule": "qwen-vl-utils"}),
             (long_clips["mp4"], {"num_frames": 7}), (long_clips["mkv"], {"fps": 2.0}), (rotated, {"num_frames": 4}),
             (clip[0].read_bytes(), {"num_frames": 8})]
    for source, kwargs in cases:
        tc = load_video(source, decoder="torchcodec", **kwargs)
        py = load_video(source, decoder="pyav", **kwargs)
        assert tc.metadata.decoder == "torchcodec"
        for field in ("indices", "fps", "total_frames", "height", "width", "rotation", "source"):
            assert getattr(tc.metadata, field) == getattr(py.metadata, field), (source, field)
        assert tc.metadata.timestamps == pytest.approx(py.metadata.timestamps, abs=1e-6)
        assert torch.equal(tc.frames, py.frames), source


def test_qwen_vl_utils_fetch_video_gives_our_frames(long_clips, tmp_path, monkeypatch):
    """qwen-vl-utils' ``fetch_video`` (its TorchCodec reader; its other readers need decord or torchvision's
    removed ``read_video``) on real files: the same sampled indices, sample rate and frames as
    ``load_video(rule="qwen-vl-utils")`` -- its output is exactly its own resize (torchvision's v1
    ``resize``, float32) of our frames, and ``resize_mode="float"`` is within one level of that."""
    vp = pytest.importorskip("qwen_vl_utils.vision_process")
    real_torchcodec()
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as tvf

    monkeypatch.setattr(vp, "get_video_reader_backend", lambda: "torchcodec")
    clips = [long_clips["mp4"], encode(tmp_path / "odd.mp4", 33, rate=30)]
    for path, ele in ((clips[0], {"fps": 2.0}), (clips[0], {"nframes": 10}), (clips[1], {"fps": 4.0})):
        (video, meta), sample_fps = vp.fetch_video({"video": str(path), "resized_height": 56, "resized_width": 84,
                                                    **ele}, return_video_sample_fps=True, return_video_metadata=True)
        ours = load_video(path, rule="qwen-vl-utils", fps=ele.get("fps"), num_frames=ele.get("nframes"))
        md = ours.metadata
        assert md.indices == list(meta["frames_indices"])
        assert sample_fps == pytest.approx(len(md.indices) / md.total_frames * md.fps)
        resized = tvf.resize(ours.frames, [56, 84], interpolation=InterpolationMode.BICUBIC, antialias=True)
        assert torch.equal(video, resized.float())
        floated = qvp.resize(ours.frames, (56, 84), mode="float").float()
        assert (floated - video).abs().max() <= 1


def test_torchcodec_that_cannot_open(clip, monkeypatch):
    path, ref, _ = clip
    fake_torchcodec(monkeypatch, reports_rotation=True, fail_open=True)
    auto = load_video(path, num_frames=4)
    assert auto.metadata.decoder == "pyav" and torch.equal(auto.frames, ref[auto.metadata.indices])
    with pytest.raises(VideoLoadError) as e:
        load_video(path, num_frames=4, decoder="torchcodec")
    name_error(e, str(path))
    assert "TorchCodec cannot open it" in str(e.value) and "libtorchcodec" in str(e.value)
