"""Vision-tower inputs from host ints, the folded patch embedding, and the preprocessor + tower wrapper, checked
against transformers' ``vision_utils`` and tiny randomly initialised Qwen2-VL / Qwen2.5-VL vision towers."""

from __future__ import annotations

import logging
import random

import pytest
import torch

from qwen_vis_prep import QwenVisionEncoder, QwenVisionPreprocessor
from qwen_vis_prep.tower import (
    FoldedPatchEmbed,
    fold_patch_embed_weight,
    tower_kwargs,
    vision_tower_inputs,
)

pytest.importorskip("transformers")
from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor  # noqa: E402
from transformers import vision_utils as vu  # noqa: E402
from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig  # noqa: E402
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel  # noqa: E402
from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLVisionConfig  # noqa: E402
from transformers.models.qwen2_vl.modeling_qwen2_vl import (  # noqa: E402
    PatchEmbed,
    Qwen2VisionTransformerPretrainedModel,
)

logging.getLogger("transformers").setLevel(logging.ERROR)

# Float32 tolerance for results that differ only by summation order (Conv3d over 2 equal frames vs one
# matmul with the summed weight; our normalise vs transformers' fused one): each embedding sums 1176
# products of O(1) values, so a few ulps of O(1) results, well under 1e-5.
F32_ATOL = 1e-5


def _random_mix(rng: random.Random, merge: int = 2) -> list[list[int]]:
    """A ragged mix of image entries (t = 1) and video entries (t > 1), sides multiples of ``merge``."""
    return [[1 if rng.random() < 0.5 else rng.randint(2, 5), merge * rng.randint(1, 9), merge * rng.randint(1, 9)]
            for _ in range(rng.randint(1, 6))]


@pytest.mark.parametrize("seed", range(8))
def test_tower_inputs_equal_vision_utils(seed):
    rng = random.Random(seed)
    grid = torch.tensor(_random_mix(rng))
    window = rng.choice([56, 84, 112, 224])
    ours = vision_tower_inputs(grid, 2, window_size=window, patch_size=14)
    cu = vu.get_vision_cu_seqlens(grid)
    pos = vu.get_vision_position_ids(grid, 2)
    win, cu_win = vu.get_vision_window_index(grid, 2, window, 14)
    for key, ref in (("cu_seqlens", cu), ("position_ids", pos), ("window_index", win), ("cu_window_seqlens", cu_win)):
        assert ours[key].dtype == ref.dtype, key
        assert torch.equal(ours[key], ref), key
    assert ours["max_seqlen"] == int((cu[1:] - cu[:-1]).max())
    assert ours["max_window_seqlen"] == int((cu_win[1:] - cu_win[:-1]).max())
    assert ours["cu_seqlens"].dtype == torch.int32 and ours["position_ids"].shape == (int(grid.prod(-1).sum()), 2)


def test_tower_inputs_from_preprocessor_grids():
    prep = QwenVisionPreprocessor("qwen2.5-vl")
    g = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, 56, 84), generator=g, dtype=torch.uint8),
              torch.randint(0, 256, (3, 140, 56), generator=g, dtype=torch.uint8)]
    videos = [torch.randint(0, 256, (5, 3, 56, 112), generator=g, dtype=torch.uint8)]
    batch = prep(images, videos=videos, tower_inputs=True)
    for modality, grid in (("image", batch.grid_thw), ("video", batch["video_grid_thw"])):
        kw = tower_kwargs(batch, modality)
        assert torch.equal(kw["cu_seqlens"], vu.get_vision_cu_seqlens(grid))
        assert torch.equal(kw["position_ids"], vu.get_vision_position_ids(grid, 2))
        win, cu_win = vu.get_vision_window_index(grid, 2, 112, 14)
        assert torch.equal(kw["window_index"], win) and torch.equal(kw["cu_window_seqlens"], cu_win)
    assert "window_index" not in QwenVisionPreprocessor("qwen2-vl")(images, tower_inputs=True).extras
    with pytest.raises(KeyError, match="tower_inputs=True"):
        tower_kwargs(prep(images), "image")


def test_tower_inputs_refuse_device_grids_and_bad_shapes():
    with pytest.raises(ValueError, match="merge_size=2"):
        vision_tower_inputs([[1, 3, 4]], 2)
    with pytest.raises(ValueError, match="three positive ints"):
        vision_tower_inputs([[1, 0, 4]], 2)
    empty = vision_tower_inputs(torch.empty(0, 3, dtype=torch.int64), 2, window_size=112)
    assert empty["cu_seqlens"].tolist() == [0] and empty["position_ids"].shape == (0, 2)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="host data"):
            vision_tower_inputs(torch.tensor([[1, 2, 2]], device="cuda"), 2)


# ----------------------------------------------------------------------------------- tiny HF towers

def _qwen2_tower() -> Qwen2VisionTransformerPretrainedModel:
    torch.manual_seed(0)
    cfg = Qwen2VLVisionConfig(depth=2, embed_dim=32, hidden_size=48, num_heads=2, mlp_ratio=2)
    return Qwen2VisionTransformerPretrainedModel._from_config(cfg, dtype=torch.float32).eval()


def _qwen25_tower() -> Qwen2_5_VisionTransformerPretrainedModel:
    torch.manual_seed(0)
    # window_size=56 -> 2x2 merged-token windows, so small grids already hold several windows;
    # block 0 windowed, block 1 full attention (as the real model alternates).
    cfg = Qwen2_5_VLVisionConfig(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=48,
                                 window_size=56, fullatt_block_indexes=[1])
    return Qwen2_5_VisionTransformerPretrainedModel._from_config(cfg, dtype=torch.float32).eval()


TOWERS = [pytest.param(_qwen2_tower, None, id="qwen2-vl"), pytest.param(_qwen25_tower, 56, id="qwen2.5-vl")]


@pytest.mark.parametrize("make, window", TOWERS)
def test_precomputed_kwargs_give_identical_tower_outputs(make, window):
    tower = make()
    grid = torch.tensor([[1, 4, 6], [3, 6, 4], [1, 2, 2], [2, 8, 10]])
    x = torch.randn(int(grid.prod(-1).sum()), 3 * 2 * 14 * 14, generator=torch.Generator().manual_seed(1))
    kwargs = vision_tower_inputs(grid, 2, window_size=window, patch_size=14)
    with torch.no_grad():
        own = tower(x, grid_thw=grid)
        given = tower(x, grid_thw=grid, **kwargs)
    assert torch.equal(own.pooler_output, given.pooler_output)
    assert torch.equal(own.last_hidden_state, given.last_hidden_state)


def test_folded_weight_matches_patch_embed_on_full_rows():
    torch.manual_seed(0)
    embed = PatchEmbed(patch_size=14, temporal_patch_size=2, in_channels=3, embed_dim=64).eval()
    prep = QwenVisionPreprocessor("qwen2-vl")
    compact = QwenVisionPreprocessor("qwen2-vl", compact_images=True)
    images = [torch.randint(0, 256, (3, 56, 84), dtype=torch.uint8),
              torch.randint(0, 256, (3, 90, 60), dtype=torch.uint8)]
    full_rows, compact_rows = prep(images).pixel_values, compact(images).pixel_values
    assert compact_rows.shape[1] * 2 == full_rows.shape[1]
    with torch.no_grad():
        ref = embed(full_rows)
        folded = compact_rows @ fold_patch_embed_weight(embed.proj.weight).T
        wrapped = FoldedPatchEmbed(embed)
        assert torch.equal(wrapped(full_rows), ref)  # full-width rows take the original path
        torch.testing.assert_close(wrapped(compact_rows), folded, atol=0, rtol=0)
    torch.testing.assert_close(folded, ref, atol=F32_ATOL, rtol=0)
    with pytest.raises(ValueError, match="Conv3d weight"):
        fold_patch_embed_weight(torch.zeros(4, 3, 14, 14))


# ------------------------------------------------------------------------------------------ wrapper

def _hf_reference(tower, images, videos):
    """transformers' processors + tower, as the HF models' get_image/video_features run them."""
    img = Qwen2VLImageProcessor()(images=images, return_tensors="pt")
    vid = Qwen2VLVideoProcessor(min_pixels=3136, max_pixels=12845056)(
        videos=videos, cap_pixels_per_frame=False, return_tensors="pt")
    with torch.no_grad():
        i = tower(img["pixel_values"], grid_thw=img["image_grid_thw"]).pooler_output
        v = tower(vid["pixel_values_videos"], grid_thw=vid["video_grid_thw"]).pooler_output
    return i, img["image_grid_thw"], v, vid["video_grid_thw"]


@pytest.mark.parametrize("make, window", TOWERS)
@pytest.mark.parametrize("compact", [False, True], ids=["full", "compact"])
def test_wrapper_equals_hf_processor_plus_tower(make, window, compact):
    g = torch.Generator().manual_seed(2)
    # Sizes that smart_resize keeps, so transformers' torchvision resize and our Pillow resize agree exactly.
    images = [torch.randint(0, 256, (3, 56, 84), generator=g, dtype=torch.uint8),
              torch.randint(0, 256, (3, 112, 56), generator=g, dtype=torch.uint8)]
    videos = [torch.randint(0, 256, (3, 3, 56, 84), generator=g, dtype=torch.uint8),
              torch.randint(0, 256, (4, 3, 112, 112), generator=g, dtype=torch.uint8)]
    tower = make()
    ref_i, ref_ig, ref_v, ref_vg = _hf_reference(tower, images, videos)
    encoder = QwenVisionEncoder(tower, "qwen2.5-vl" if window else "qwen2-vl", compact_images=compact).eval()
    assert encoder.window_size == window
    with torch.no_grad():
        out = encoder(images, videos=videos)
    assert torch.equal(out.image_grid_thw, ref_ig) and torch.equal(out.video_grid_thw, ref_vg)
    torch.testing.assert_close(out.image_embeds, ref_i, atol=F32_ATOL, rtol=0)
    torch.testing.assert_close(out.video_embeds, ref_v, atol=F32_ATOL, rtol=0)
    assert [e.shape[0] for e in out.split("video")] == [2 * 4 * 6 // 4, 2 * 8 * 8 // 4]  # grids (2,4,6), (2,8,8)
    only_videos = encoder(videos=videos)
    assert only_videos.image_embeds is None and torch.equal(only_videos.video_embeds, out.video_embeds)


def test_wrapper_checks_the_tower_matches():
    with pytest.raises(ValueError, match="patch_size=16 does not match the tower's patch_size=14"):
        QwenVisionEncoder(_qwen2_tower(), "qwen3-vl")


@pytest.mark.cuda  # skipped without a CUDA device (conftest)
def test_cuda_placement_without_sync():
    grid = torch.tensor([[1, 4, 6], [3, 6, 4]])
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any device->host sync below raises
    try:
        out = vision_tower_inputs(grid, 2, window_size=112, patch_size=14, device="cuda")
    finally:
        torch.cuda.set_sync_debug_mode(0)
    for key in ("cu_seqlens", "position_ids", "window_index", "cu_window_seqlens"):
        assert out[key].device.type == "cuda"
        ref = vision_tower_inputs(grid, 2, window_size=112, patch_size=14)[key]
        assert torch.equal(out[key].cpu(), ref)
    tower = _qwen25_tower().cuda()
    x = torch.randn(int(grid.prod(-1).sum()), 1176, device="cuda")
    with torch.no_grad():
        own = tower(x, grid_thw=grid.cuda()).pooler_output
        kwargs = vision_tower_inputs(grid, 2, window_size=56, device="cuda")
        given = tower(x, grid_thw=grid.cuda(), **kwargs).pooler_output
    assert torch.equal(own, given)
