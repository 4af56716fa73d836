"""Videos: layout against transformers' video processors, per-frame Pillow exactness, sizing, frame sampling."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
import torch
from PIL import Image

from qwen_vis_prep import QwenVisionPreprocessor, VisionPreprocessConfig
from qwen_vis_prep import layout
from qwen_vis_prep.backends import reference
from qwen_vis_prep.backends.reference import normalize_constants
from qwen_vis_prep.video import (
    VIDEO_PRESETS,
    VideoConfig,
    default_video_config,
    preprocess_videos,
    sample_frame_indices,
    smart_resize_video,
    video_target_size,
)

transformers = pytest.importorskip("transformers")
from transformers import Qwen2VLVideoProcessor  # noqa: E402
from transformers.models.qwen3_vl import video_processing_qwen3_vl as hf_qwen3  # noqa: E402
from transformers.video_utils import VideoMetadata  # noqa: E402

logging.getLogger("transformers").setLevel(logging.ERROR)

# transformers folds the rescale into mean/std ((x - 255 m) / (255 s)); we rescale first ((x / 255 - m) / s).
# Both are a few float32 roundings of values |v| < 2.7, so they agree to a few ulp (~1e-6); 1e-5 leaves room.
# One uint8 level is 1 / 255 / std >= 0.0078, so this tolerance also proves the levels are identical.
LAYOUT_ATOL = 1e-5

HF_PROCESSORS = {"qwen2-vl": Qwen2VLVideoProcessor, "qwen2.5-vl": Qwen2VLVideoProcessor,
                 "qwen3-vl": hf_qwen3.Qwen3VLVideoProcessor}


def _clip(t: int, h: int, w: int, seed: int, dtype=torch.uint8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (t, 3, h, w), generator=g, dtype=torch.uint8).to(dtype)


def _hf(preset: str, videos, **kwargs):
    vc = VIDEO_PRESETS[preset]
    proc = HF_PROCESSORS[preset](size={"shortest_edge": vc.min_pixels, "longest_edge": vc.max_pixels},
                                 max_video_tokens=vc.max_video_tokens)
    kwargs.setdefault("cap_pixels_per_frame", False)
    out = proc(videos=videos, do_sample_frames=False, return_tensors="pt", **kwargs)
    return out["pixel_values_videos"], out["video_grid_thw"]


def _pillow_frames(clip: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pillow BICUBIC applied to each frame on its own: ``[T, 3, H, W] uint8 -> [T, 3, h, w]``."""
    frames = [np.asarray(Image.fromarray(f.permute(1, 2, 0).numpy(), "RGB").resize(
        (size[1], size[0]), Image.Resampling.BICUBIC)) for f in clip]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


def _reference_rows(levels: torch.Tensor, config: VisionPreprocessConfig) -> torch.Tensor:
    scale, mean, std = normalize_constants(config, torch.device("cpu"))
    y = reference.normalize(levels, scale, mean, std)
    tp, p = config.temporal_patch_size, config.patch_size
    t, _, h, w = levels.shape
    out = torch.empty(-(-t // tp) * (h // p) * (w // p), 3 * tp * p * p, dtype=config.output_dtype)
    layout.patchify_video_into(out, y, p, config.merge_size, tp)
    return out


# ----------------------------------------------------------------------------- layout (resizing off)

@pytest.mark.parametrize("preset", ["qwen2-vl", "qwen3-vl"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32], ids=["uint8", "float"])
def test_layout_matches_hf_without_resize(preset, dtype):
    f = 28 if preset != "qwen3-vl" else 32
    clips = [_clip(5, 2 * f, 3 * f, 0, dtype), _clip(4, 4 * f, 2 * f, 1, dtype), _clip(1, 2 * f, 2 * f, 2, dtype),
             _clip(2, 2 * f, 4 * f, 3, dtype)]
    config = VisionPreprocessConfig.from_preset(preset, do_resize=False)
    ours, grid = preprocess_videos(clips, config, preset)
    ref, ref_grid = _hf(preset, clips, do_resize=False)
    assert torch.equal(grid, ref_grid)
    assert grid.dtype == torch.int64 and grid.device.type == "cpu"
    assert ours.shape == ref.shape and ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, atol=LAYOUT_ATOL, rtol=0)


def test_temporal_pairs_are_real_frames_and_odd_counts_repeat_the_last():
    # Frame k is filled with level k: column block t of row block g must read frame min(2g + t, T - 1).
    t, p = 5, 14
    clip = torch.arange(t, dtype=torch.uint8).view(t, 1, 1, 1).expand(t, 3, 28, 56).contiguous()
    config = VisionPreprocessConfig(do_resize=False, do_normalize=False, do_rescale=False)
    out, grid = preprocess_videos(clip, config)
    assert grid.tolist() == [[3, 2, 4]]
    blocks = out.view(3, 8, 3, 2, p * p)  # [grid_t, rows per frame, C, T, P*P]
    for g in range(3):
        for k in range(2):
            assert torch.all(blocks[g, :, :, k] == min(2 * g + k, t - 1))


# ------------------------------------------------------------------------------- resizing on (pil mode)

RESIZE_CASES = [
    pytest.param("qwen2-vl", [(5, 60, 90), (4, 30, 40), (3, 100, 57)], id="qwen2-down-up-ragged"),
    pytest.param("qwen2.5-vl", [(2, 45, 70)], id="qwen2.5-single"),
    pytest.param("qwen3-vl", [(5, 70, 100), (4, 20, 50), (3, 130, 66)], id="qwen3-down-up-ragged"),
]


@pytest.mark.parametrize("preset, shapes", RESIZE_CASES)
def test_pil_mode_is_pillow_frame_by_frame(preset, shapes):
    clips = [_clip(*s, seed=i) for i, s in enumerate(shapes)]
    config = VisionPreprocessConfig.from_preset(preset)
    vc = VideoConfig.from_preset(preset, resize_mode="pil")
    ours, grid = preprocess_videos(clips, preset, vc)
    parts = []
    for c in clips:
        size = video_target_size(c.shape[0], c.shape[-2], c.shape[-1], config, vc)
        parts.append(_reference_rows(_pillow_frames(c, size), config))
    assert torch.equal(ours, torch.cat(parts))  # bit-exact: same Pillow levels, same arithmetic
    # The same Pillow frames through transformers (resizing off there) give the same layout and values.
    frames = [_pillow_frames(c, video_target_size(c.shape[0], c.shape[-2], c.shape[-1], config, vc)) for c in clips]
    ref, ref_grid = _hf(preset, frames, do_resize=False)
    assert torch.equal(grid, ref_grid)
    torch.testing.assert_close(ours, ref, atol=LAYOUT_ATOL, rtol=0)


def test_reference_backend_equals_pillow_backend():
    # The reference (what CUDA runs for clips) on the whole [T, 3, H, W] stack gives the Pillow bytes too.
    clips = [_clip(5, 60, 90, 0), _clip(3, 100, 57, 1)]
    with_pillow = preprocess_videos(clips, "qwen2-vl", backend="pillow")[0]
    assert torch.equal(preprocess_videos(clips, "qwen2-vl", backend="reference")[0], with_pillow)


@pytest.mark.parametrize("preset, shapes", RESIZE_CASES)
@pytest.mark.parametrize("cap", [False, True], ids=["uncapped", "capped"])
def test_sizes_and_grids_match_hf_with_resize(preset, shapes, cap):
    clips = [_clip(*s, seed=i) for i, s in enumerate(shapes)]
    vc = VideoConfig.from_preset(preset)
    if cap:  # make the qwen-vl-utils cap bind on these small clips
        vc = vc.replace(cap_pixels_per_frame=True, max_video_tokens=3 if preset != "qwen3-vl" else 2)
    ours, grid = preprocess_videos(clips, preset, vc)
    proc = HF_PROCESSORS[preset](size={"shortest_edge": vc.min_pixels, "longest_edge": vc.max_pixels},
                                 max_video_tokens=vc.max_video_tokens)
    ref = proc(videos=clips, do_sample_frames=False, cap_pixels_per_frame=cap, return_tensors="pt")
    assert torch.equal(grid, ref["video_grid_thw"])
    # the video presets resize with torch's uint8 kernel, as these processors do on CPU clips
    torch.testing.assert_close(ours, ref["pixel_values_videos"], atol=LAYOUT_ATOL, rtol=0)


@pytest.mark.parametrize("sizing", ["qwen2-vl", "qwen3-vl"])
def test_sizing_matches_hf_on_many_shapes(sizing):
    rng = random.Random(4)
    preset = "qwen3-vl" if sizing == "qwen3-vl" else "qwen2-vl"
    config = VisionPreprocessConfig.from_preset(preset)
    proc = HF_PROCESSORS[preset]()
    for _ in range(300):
        # Even t: transformers < 5.2x's get_num_of_video_patches floors t / 2 (the processors themselves pad,
        # see the tests above, which cover odd counts).
        t, h, w = 2 * rng.randint(1, 32), rng.randint(8, 2000), rng.randint(8, 2000)
        if max(h, w) / min(h, w) > 150:
            continue
        lo = rng.choice([4096, 3136, 128 * 32 * 32, 100352])
        vc = VideoConfig(min_pixels=lo, max_pixels=rng.choice([lo, 602112, 786432, 12845056, 25165824]),
                         sizing=sizing, cap_pixels_per_frame=sizing == "qwen3-vl" and rng.random() < 0.5,
                         max_video_tokens=rng.choice([768, 128000, 50]))
        size = video_target_size(t, h, w, config, vc)
        kwargs = {"size": {"shortest_edge": vc.min_pixels, "longest_edge": vc.max_pixels}}
        if vc.cap_pixels_per_frame:
            kwargs["cap_pixels_per_frame"] = True
            proc.max_video_tokens = vc.max_video_tokens
        n = proc.get_num_of_video_patches(t, h, w, videos_kwargs=kwargs)
        assert -(-t // 2) * (size[0] // config.patch_size) * (size[1] // config.patch_size) == n, (t, h, w, vc)
        if sizing == "qwen3-vl" and not vc.cap_pixels_per_frame:
            assert smart_resize_video(t, h, w, 2, 32, vc.min_pixels, vc.max_pixels) == hf_qwen3.smart_resize(
                t, h, w, temporal_factor=2, factor=32, min_pixels=vc.min_pixels, max_pixels=vc.max_pixels)


def test_qwen3_sizing_needs_two_frames():
    with pytest.raises(ValueError, match="at least temporal_factor=2 frames"):
        preprocess_videos(_clip(1, 64, 64, 0), "qwen3-vl")
    # Without resizing there is nothing to size: a one-frame clip is padded to one temporal pair.
    out, grid = preprocess_videos(_clip(1, 64, 64, 0), VisionPreprocessConfig.from_preset("qwen3-vl", do_resize=False))
    assert grid.tolist() == [[1, 4, 4]]


# ------------------------------------------------------------------------------------ frame sampling

def test_sampling_matches_qwen2_vl_processor():
    proc = Qwen2VLVideoProcessor()
    rng = random.Random(0)
    for _ in range(200):
        total, vfps = rng.randint(4, 900), rng.choice([24, 25, 29.97, 30, 60, 7.5])
        meta = VideoMetadata(total_num_frames=total, fps=vfps)
        fps = rng.choice([0.5, 1, 2, 3.3])
        assert sample_frame_indices(total, vfps, fps=fps, rule="qwen2-vl") == \
            proc.sample_frames(meta, fps=fps).tolist(), (total, vfps, fps)
        n = rng.randint(2, total)
        if round(n / 2) * 2 > total:  # transformers refuses these too
            continue
        assert sample_frame_indices(total, vfps, num_frames=n, rule="qwen2-vl") == \
            proc.sample_frames(meta, num_frames=n).tolist(), (total, n)
    assert sample_frame_indices(7, rule="qwen2-vl") == list(range(7))  # neither given: every frame


def test_sampling_matches_qwen3_vl_processor():
    proc = hf_qwen3.Qwen3VLVideoProcessor()
    rng = random.Random(1)
    for _ in range(200):
        total, vfps = rng.randint(1, 900), rng.choice([24, 25, 29.97, 30, 60, 7.5])
        meta = VideoMetadata(total_num_frames=total, fps=vfps)
        fps = rng.choice([None, 0.5, 1, 2, 3.3])
        ours = sample_frame_indices(total, vfps, fps=fps, rule="qwen3-vl")
        assert ours == proc.sample_frames(meta, fps=fps).tolist(), (total, vfps, fps)
        n = rng.randint(1, 2 * total)
        assert sample_frame_indices(total, vfps, num_frames=n, rule="qwen3-vl") == \
            proc.sample_frames(meta, num_frames=n).tolist()
    assert VideoConfig.from_preset("qwen3-vl").sample_indices(300, 30) == sample_frame_indices(300, 30, fps=2.0)
    with pytest.warns(UserWarning, match="assuming 24"):
        assert sample_frame_indices(48, rule="qwen3-vl") == np.linspace(0, 47, 4).round().astype(int).tolist()


def test_sampling_qwen_vl_utils_rule():
    # smart_nframes: 10 s at 30 fps, fps=2 -> 20 frames spread over 0..299; nframes rounded to pairs.
    idx = sample_frame_indices(300, 30.0, rule="qwen-vl-utils")
    assert len(idx) == 20 and idx[0] == 0 and idx[-1] == 299
    assert idx == torch.linspace(0, 299, 20).round().long().tolist()
    assert len(sample_frame_indices(300, 30.0, num_frames=7, rule="qwen-vl-utils")) == 8  # round(3.5) * 2
    assert len(sample_frame_indices(9, 30.0, rule="qwen-vl-utils")) == 4  # min_frames=4 wins
    assert len(sample_frame_indices(3, 30.0, rule="qwen-vl-utils")) == 2  # capped by the 3 frames, floored to a pair
    with pytest.raises(ValueError, match="mutually exclusive"):
        sample_frame_indices(10, 30.0, fps=1, num_frames=4)
    with pytest.raises(ValueError, match="cannot sample"):
        sample_frame_indices(1, 30.0, rule="qwen-vl-utils")  # 1 frame: fewer than one pair


def test_sampling_qwen_vl_utils_rule_against_qwen_vl_utils():
    """``rule="qwen-vl-utils"`` against qwen-vl-utils' own ``smart_nframes`` and its float32 linspace, on
    many frame counts, source rates, fps and frame counts (its readers need decord, TorchCodec or
    torchvision's removed ``read_video``, none of which is installed, so the sampling is compared alone)."""
    vp = pytest.importorskip("qwen_vl_utils.vision_process")
    rng = random.Random(11)
    compared = 0
    for _ in range(400):
        total, video_fps = rng.randint(2, 3000), rng.choice([23.976, 24.0, 25.0, 29.97, 30.0, 50.0, 60.0, 7.5])
        ele = {"nframes": rng.randint(2, total)} if rng.random() < 0.3 else {"fps": rng.choice([0.5, 1.0, 2.0, 4.0])}
        try:
            n = vp.smart_nframes(ele, total_frames=total, video_fps=video_fps)
        except ValueError:
            with pytest.raises(ValueError):
                sample_frame_indices(total, video_fps, fps=ele.get("fps"), num_frames=ele.get("nframes"),
                                     rule="qwen-vl-utils")
            continue
        expected = torch.linspace(0, total - 1, n).round().long().tolist()
        got = sample_frame_indices(total, video_fps, fps=ele.get("fps"), num_frames=ele.get("nframes"),
                                   rule="qwen-vl-utils")
        assert got == expected, (total, video_fps, ele)
        compared += 1
    assert compared > 300


# ---------------------------------------------------------------------------------------- input forms

def test_batch_list_and_frame_lists_agree():
    clips = [_clip(3, 60, 90, 0), _clip(3, 60, 90, 1)]
    ref, grid = preprocess_videos(clips, "qwen2-vl")
    stacked, grid5 = preprocess_videos(torch.stack(clips), "qwen2-vl")
    framed, _ = preprocess_videos([list(c.unbind(0)) for c in clips], "qwen2-vl")
    hwc, _ = preprocess_videos([c.permute(0, 2, 3, 1).numpy() for c in clips], "qwen2-vl")
    floats, _ = preprocess_videos([c.float() for c in clips], "qwen2-vl")
    unit, _ = preprocess_videos([c.float() / 255 for c in clips],
                                VisionPreprocessConfig.from_preset("qwen2-vl", input_range="0-1"))
    assert torch.equal(grid, grid5)
    for other in (stacked, framed, hwc, floats, unit):
        assert torch.equal(other, ref)


def test_batch_on_reference_backend_equals_clip_by_clip():
    clips = torch.stack([_clip(3, 60, 90, 0), _clip(3, 60, 90, 1)])
    whole = preprocess_videos(clips, "qwen2-vl", backend="reference")[0]
    assert torch.equal(whole, torch.cat([preprocess_videos(c, "qwen2-vl", backend="reference")[0] for c in clips]))


def test_input_not_modified_dtype_and_noncontiguous():
    clip = _clip(4, 90, 60, 0).transpose(-1, -2)  # non-contiguous [T, 3, 60, 90]
    version = clip._version
    before = clip.clone()
    out, _ = preprocess_videos(clip, VisionPreprocessConfig(output_dtype=torch.bfloat16))
    assert clip._version == version and torch.equal(clip, before)
    assert out.dtype == torch.bfloat16
    ref, _ = preprocess_videos(clip.contiguous(), "qwen2-vl")
    assert torch.equal(out, ref.to(torch.bfloat16))


def test_gradients_flow_in_float_mode():
    clip = (torch.rand(3, 3, 60, 90, dtype=torch.float64) * 255).requires_grad_()
    out, _ = preprocess_videos(clip, "qwen2-vl", VideoConfig.from_preset("qwen2-vl", resize_mode="float"))
    out.sum().backward()
    assert clip.grad is not None and torch.isfinite(clip.grad).all() and clip.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="resize_mode='float'"):
        preprocess_videos(clip, "qwen2-vl")


@pytest.mark.parametrize("bad, match", [
    pytest.param([], "at least one clip", id="empty-list"),
    pytest.param([torch.zeros(3, 56, 56, dtype=torch.uint8)] * 2, "nest them", id="bare-frames"),
    pytest.param([[torch.zeros(3, 56, 56, dtype=torch.uint8), torch.zeros(3, 28, 56, dtype=torch.uint8)]],
                 "one size", id="frames-differ"),
    pytest.param(torch.zeros(0, 3, 56, 56, dtype=torch.uint8), "0 frames", id="no-frames"),
    pytest.param(torch.zeros(2, 5, 56, 56, dtype=torch.uint8), r"videos: frames: expected \[B, C, H, W\]",
                 id="bad-channels"),
    pytest.param("clip.mp4", "expected a torch.Tensor", id="path"),
])
def test_errors_say_what_was_expected(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        preprocess_videos(bad, "qwen2-vl")


def test_presets_and_defaults():
    assert default_video_config("qwen3-vl") is VIDEO_PRESETS["qwen3-vl"]
    assert default_video_config(VisionPreprocessConfig.from_preset("qwen3-vl")).sizing == "qwen3-vl"
    assert default_video_config(None) is VIDEO_PRESETS["qwen2-vl"]
    assert VideoConfig.from_preset("Qwen2_5-VL") is VIDEO_PRESETS["qwen2.5-vl"]
    with pytest.raises(ValueError, match="min_pixels must be <= max_pixels"):
        VideoConfig(min_pixels=10, max_pixels=5)
    with pytest.raises(TypeError, match="unknown video config field"):
        VIDEO_PRESETS["qwen2-vl"].replace(max_pixel=3)


# --------------------------------------------------------------------------------------------- module

def test_module_videos_only_and_mixed():
    prep = QwenVisionPreprocessor("qwen2-vl")
    clips = [_clip(5, 60, 90, 0), _clip(2, 56, 56, 1)]
    images = [_clip(1, 60, 90, 5)[0], _clip(1, 40, 70, 6)[0]]
    only = prep(videos=clips)
    assert only.pixel_values.shape == (0, 1176) and only.grid_thw.shape == (0, 3)
    ref_pv, ref_grid = preprocess_videos(clips, "qwen2-vl")
    assert torch.equal(only["pixel_values_videos"], ref_pv) and torch.equal(only["video_grid_thw"], ref_grid)
    mixed = prep(images, videos=clips)
    alone = prep(images)
    assert torch.equal(mixed.pixel_values, alone.pixel_values) and torch.equal(mixed.grid_thw, alone.grid_thw)
    assert torch.equal(mixed["pixel_values_videos"], ref_pv)
    assert set(mixed.keys()) == {"pixel_values", "grid_thw", "pixel_values_videos", "video_grid_thw"}
    with pytest.raises(ValueError, match="got neither"):
        prep()


def test_module_qwen3_uses_its_video_sizing():
    prep = QwenVisionPreprocessor("qwen3-vl")
    assert prep.video_config is VIDEO_PRESETS["qwen3-vl"] and prep.window_size is None
    out = prep(videos=_clip(4, 70, 100, 0))
    assert out["video_grid_thw"].tolist() == [[2, 4, 6]]
    assert out["pixel_values_videos"].shape[1] == 3 * 2 * 16 * 16
    assert "video_sizing='qwen3-vl'" in repr(prep)


@pytest.mark.cuda  # skipped without a CUDA device (conftest)
def test_cuda_equals_cpu():
    clips = [_clip(5, 60, 90, 0), _clip(3, 100, 57, 1)]
    cpu, grid = preprocess_videos(clips, "qwen2-vl")
    gpu, grid_gpu = preprocess_videos([c.cuda() for c in clips], "qwen2-vl")
    assert gpu.device.type == "cuda" and grid_gpu.device.type == "cpu"
    assert torch.equal(gpu.cpu(), cpu) and torch.equal(grid, grid_gpu)
    batch = preprocess_videos(torch.stack([clips[0], clips[0]]).cuda(), "qwen2-vl")[0]
    assert torch.equal(batch.cpu(), torch.cat([cpu[:120], cpu[:120]]))


def test_bad_item_in_a_clip_list_is_named_by_its_index():
    """Regression: the error used to name videos[0] (a good clip) for garbage at videos[1]."""
    clip = torch.zeros(4, 3, 56, 56, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"str at videos\[1\]"):
        preprocess_videos([clip, "clip.mp4"])


@pytest.mark.parametrize("preset, overrides, make", [
    pytest.param("qwen2-vl", {}, lambda: [_clip(5, 60, 90, 0), _clip(2, 100, 57, 1), _clip(1, 45, 61, 2)],
                 id="odd-even-single-frame"),
    pytest.param("qwen2-vl", {}, lambda: torch.stack([_clip(3, 60, 90, 3), _clip(3, 60, 90, 4)]), id="batch-5d"),
    pytest.param("qwen2-vl", {"output_dtype": torch.bfloat16}, lambda: [_clip(3, 70, 50, 5)], id="bf16"),
    pytest.param("qwen3-vl", {}, lambda: [_clip(4, 90, 130, 6)], id="qwen3-patch16"),
    pytest.param("qwen2-vl", {"do_resize": False}, lambda: [_clip(3, 56, 84, 7)], id="no-resize"),
    pytest.param("qwen2-vl", {}, lambda: [_clip(3, 60, 90, 8).float() * 0.99 + 0.2], id="float-frames"),
    pytest.param("qwen2-vl", {}, lambda: [_clip(3, 56, 56, 9).float()], id="float-frames-at-size"),
    pytest.param("qwen2-vl", {"input_range": "0-1"}, lambda: [_clip(3, 60, 90, 10).float() / 255], id="unit-range"),
])
def test_pillow_backend_videos_bit_exact_with_reference(preset, overrides, make):
    """The fused Pillow path for clips (each frame resized by Pillow straight into its temporal slot) gives
    the reference's bits, padding included."""
    config = VisionPreprocessConfig.from_preset(preset, **overrides)
    clips = make()
    ours, grid = preprocess_videos(clips, config, backend="pillow")
    ref, ref_grid = preprocess_videos(clips, config, backend="reference")
    assert torch.equal(grid, ref_grid) and ours.dtype == config.output_dtype
    assert torch.equal(ours, ref)


@pytest.mark.slow  # ~4 s: three compiles
def test_torch_compile_fullgraph_traces_clip_tensors():
    """Under ``torch.compile(fullgraph=True)`` a clip tensor (one clip or a stacked batch, CHW or HWC) is one
    registered op with ``video_grid_thw`` from static shapes; same results as eager."""
    video = VideoConfig.from_preset("qwen2-vl", max_pixels=28 * 28 * 20)

    def run(x, lay="auto"):
        return preprocess_videos(x, "qwen2-vl", video, layout=lay)

    batch = torch.stack([_clip(4, 60, 80, 1), _clip(4, 60, 80, 2)])
    for x, lay in [(_clip(5, 60, 80, 0), "auto"), (batch, "auto"),
                   (_clip(3, 50, 70, 3).permute(0, 2, 3, 1).contiguous(), "hwc")]:
        compiled = torch.compile(lambda v: run(v, lay), fullgraph=True)
        got, grid = compiled(x)
        ref, ref_grid = run(x, lay)
        assert torch.equal(got, ref) and torch.equal(grid, ref_grid)
