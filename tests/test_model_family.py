"""The wider Qwen-style family: Qwen3.5, Qwen2.5-Omni, Qwen3-Omni, dots3-note, GLM-4.1V/4.5V/4.6V,
PaddleOCR-VL and ERNIE-4.5-VL, against each family's own transformers processors.

Every expected value comes from transformers (its sizing functions, its PIL-backend image processors, its
torchvision-backend and video processors, its text processors) or from Pillow; nothing from our own output.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers

import qwen_vis_prep as qvp
from qwen_vis_prep import sizing
from qwen_vis_prep.hf_adapter import HFQwenImageProcessor
from qwen_vis_prep.pretrained import PretrainedConfigError, config_from_hf, to_hf_dict

# float32 rounding of the normalisation (PIL backend: NumPy float steps; torchvision backend: one fused
# float32 normalise): a few ulps of values below 3 in magnitude
PV_ATOL = 1e-5
NEW_PRESETS = ["qwen3.5", "qwen2.5-omni", "qwen3-omni", "dots3-note", "glm-4.1v", "glm-4.5v", "glm-4.6v",
               "paddleocr-vl", "ernie-4.5-vl"]
# preset -> the transformers image processor class its checkpoints name (PIL backend: "<name>Pil")
HF_CLASS = {"qwen3.5": "Qwen2VLImageProcessor", "qwen2.5-omni": "Qwen2VLImageProcessor",
            "qwen3-omni": "Qwen2VLImageProcessor", "dots3-note": "Qwen2VLImageProcessor",
            "glm-4.1v": "Glm4vImageProcessor", "glm-4.5v": "Glm4vImageProcessor", "glm-4.6v": "Glm46VImageProcessor",
            "paddleocr-vl": "PaddleOCRVLImageProcessor", "ernie-4.5-vl": "Ernie4_5_VLMoeImageProcessor"}


def hf_image_processor(preset: str, backend: str = "pil"):
    """The family's transformers image processor with the preset's values (PIL or torchvision backend)."""
    keys = to_hf_dict(qvp.PRESETS[preset])
    keys.pop("image_processor_type")  # a class that processes alike (Glm4v for Glm46V, Qwen2VL for ERNIE)
    cls = getattr(transformers, HF_CLASS[preset] + ("Pil" if backend == "pil" else ""))
    return cls(**keys)


def hf_outputs(processor, images) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pixel_values as rows, image_grid_thw)``; the channel axis is named, as a 3-pixel-high HWC array
    would be taken for CHW."""
    layout = "channels_first" if isinstance(images[0], torch.Tensor) else "channels_last"
    out = processor(images, return_tensors="pt", input_data_format=layout)
    pv = out["pixel_values"]
    return pv.reshape(pv.shape[0], -1), out["image_grid_thw"]


def test_every_family_has_a_preset():
    assert set(NEW_PRESETS) <= set(qvp.MODEL_PRESETS)
    for model_type, preset in [("qwen3_5", "qwen3.5"), ("qwen3_5_moe", "qwen3.5"), ("qwen2_5_omni", "qwen2.5-omni"),
                               ("qwen3_omni_moe", "qwen3-omni"), ("glm4v", "glm-4.1v"), ("glm4v_moe", "glm-4.5v"),
                               ("glm46v", "glm-4.6v"), ("paddleocr_vl", "paddleocr-vl"),
                               ("ernie4_5_vl_moe", "ernie-4.5-vl"), ("dots3_note", "dots3-note")]:
        assert qvp.presets.get_preset(model_type).name == preset


def test_presets_fit_their_towers():
    """Patch size, temporal patch size and merge size of each preset are those of the vision tower config
    transformers builds for the model type (and dots3-note's 2-D patch embedding takes one frame)."""
    from transformers import AutoConfig

    for preset, model_type in [("qwen3.5", "qwen3_5"), ("qwen2.5-omni", "qwen2_5_omni"),
                               ("qwen3-omni", "qwen3_omni_moe"), ("glm-4.1v", "glm4v"), ("glm-4.5v", "glm4v_moe"),
                               ("glm-4.6v", "glm46v"), ("paddleocr-vl", "paddleocr_vl"),
                               ("ernie-4.5-vl", "ernie4_5_vl_moe"), ("dots3-note", "dots3_note")]:
        config = AutoConfig.for_model(model_type)
        vision = getattr(config, "vision_config", None)
        if vision is None:  # the omni models keep it inside the thinker
            vision = config.thinker_config.vision_config
        c = qvp.PRESETS[preset]
        assert vision.patch_size == c.patch_size, preset
        assert getattr(vision, "spatial_merge_size", c.merge_size) == c.merge_size, preset
        assert getattr(vision, "temporal_patch_size", 1) == c.temporal_patch_size, preset
        assert qvp.presets.preset_of_tower(vision).image == c, preset


# ------------------------------------------------------------------------------------------ sizing

@pytest.mark.parametrize("rule", ["glm4v", "paddleocr-vl"])
def test_sizing_rules_equal_transformers(rng, rule):
    """The families' own sizing functions against transformers' on random sizes, tiny and extreme sides
    included (the error for an aspect ratio above 200 too)."""
    if rule == "glm4v":
        from transformers.models.glm4v.image_processing_glm4v import smart_resize as theirs

        def ref(h, w):
            return theirs(2, h, w, temporal_factor=2, factor=28, min_pixels=12544, max_pixels=9633792)

        def ours(h, w):
            return sizing.glm4v_smart_resize(h, w, 28, 12544, 9633792)
    else:
        from transformers.models.paddleocr_vl.image_processing_paddleocr_vl import smart_resize as theirs

        def ref(h, w):
            return theirs(h, w, factor=28, min_pixels=147384, max_pixels=2822400)

        def ours(h, w):
            return sizing.paddleocr_smart_resize(h, w, 28, 147384, 2822400)
    sizes = [tuple(int(v) for v in rng.integers(1, 5000, 2)) for _ in range(400)]
    sizes += [(1, 1), (1, 27), (27, 1), (10, 300), (300, 10), (27, 28), (28, 27), (13, 2000), (2000, 13), (1, 150),
              (3, 700), (700, 3), (20000, 150), (150, 20000)]
    for h, w in sizes:
        try:
            want = ref(h, w)
        except ValueError:
            with pytest.raises(ValueError, match="aspect ratio"):
                ours(h, w)
            continue
        assert tuple(ours(h, w)) == tuple(want), (h, w)


# ------------------------------------------------------------------------------------------ images

def family_images(rng) -> list[np.ndarray]:
    """Real photos at many sizes: tiny (sides below one merge window), extreme aspects, down- and
    upscales, plus a random-noise image."""
    from conftest import load_hwc

    astronaut, coffee, camera = load_hwc("astronaut"), load_hwc("coffee"), load_hwc("camera")
    big = np.tile(coffee, (6, 6, 1))  # 2400 x 3600: downscaled by every preset
    return [astronaut, coffee[::7, ::5], camera[:20, :], camera[:, :13], astronaut[:9, :9], coffee[100:103, :],
            big, astronaut[:, ::2][:300], rng.integers(0, 256, (77, 311, 3), dtype=np.uint8)]


@pytest.mark.parametrize("preset", NEW_PRESETS)
def test_images_match_the_family_pil_processor(rng, preset):
    """pil mode against the family's PIL-backend image processor: grids equal, pixels within 1e-5."""
    config = qvp.PRESETS[preset]
    hf = hf_image_processor(preset, "pil")
    images = family_images(rng)
    ours = qvp.preprocess(images, config)
    pv, grid = hf_outputs(hf, images)
    assert torch.equal(ours.grid_thw, grid.to(torch.int64)), preset
    assert ours.pixel_values.shape == pv.shape
    assert (ours.pixel_values - pv).abs().max().item() <= PV_ATOL


@pytest.mark.parametrize("preset", ["glm-4.6v", "paddleocr-vl", "ernie-4.5-vl"])
def test_torch_uint8_mode_matches_the_family_torchvision_processor(rng, preset):
    """torch-uint8 mode against the family's torchvision-backend processor on CPU inputs (its resize is
    torch's uint8 kernel there): grids equal, pixels within 1e-5."""
    config = qvp.PRESETS[preset].replace(resize_mode="torch-uint8")
    images = [torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1) for im in family_images(rng)]
    ours = qvp.preprocess(images, config)
    pv, grid = hf_outputs(hf_image_processor(preset, "torchvision"), images)
    assert torch.equal(ours.grid_thw, grid.to(torch.int64))
    assert (ours.pixel_values - pv).abs().max().item() <= PV_ATOL


@pytest.mark.parametrize("preset", NEW_PRESETS)
def test_backends_agree_bit_for_bit(rng, preset):
    """Every CPU backend (and Triton in its interpreter) equals the reference for the new sizing rules,
    one-copy rows (temporal_patch_size 1) and raster rows; small images, as the interpreter is slow."""
    config = qvp.PRESETS[preset].replace(min_pixels=28 * 28, max_pixels=28 * 28 * 12)
    images = [torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1)
              for im in (family_images(rng)[1], family_images(rng)[4], family_images(rng)[8])]
    want = qvp.preprocess(images, config, backend="reference").pixel_values
    for backend in ("native", "pillow", "triton"):
        if not qvp.backends.get(backend).can_run(torch.device("cpu"))[0]:
            continue
        assert torch.equal(qvp.preprocess(images, config, backend=backend).pixel_values, want), (preset, backend)


# ------------------------------------------------------------------------------------------ checkpoints

@pytest.mark.parametrize("preset", NEW_PRESETS)
def test_saved_processor_files_read_back_as_the_preset(preset):
    """What each family's transformers class writes with ``save_pretrained`` reads back as the preset."""
    saved = json.loads(hf_image_processor(preset, "torchvision").to_json_string())
    assert config_from_hf(saved) == qvp.PRESETS[preset]
    assert HFQwenImageProcessor.from_pretrained(saved).config == qvp.PRESETS[preset]


def test_family_class_defaults_and_pixel_keys():
    """A file that leaves keys out gets its class's defaults; GLM and ERNIE read only ``size`` (their
    top-level min/max_pixels do nothing in transformers, and warn here); another family's class raises."""
    glm = config_from_hf({"image_processor_type": "Glm46VImageProcessorFast"})
    hf_glm = transformers.Glm46VImageProcessorPil()
    assert (glm.min_pixels, glm.max_pixels) == (hf_glm.size["shortest_edge"], hf_glm.size["longest_edge"])
    assert glm.sizing == "glm4v"
    paddle = config_from_hf({"image_processor_type": "PaddleOCRVLImageProcessor", "min_pixels": 147384})
    assert (paddle.min_pixels, paddle.temporal_patch_size, paddle.row_order) == (147384, 1, "raster")
    with pytest.warns(UserWarning, match="size' only"):
        ernie = config_from_hf({"image_processor_type": "Ernie4_5_VL_MoeImageProcessor", "max_pixels": 1000000})
    assert ernie.max_pixels == transformers.Ernie4_5_VLMoeImageProcessorPil().size["longest_edge"]
    with pytest.raises(PretrainedConfigError, match="SiglipImageProcessor"):
        config_from_hf({"image_processor_type": "SiglipImageProcessor"})


# ------------------------------------------------------------------------------------------ videos

# preset -> the transformers video processor class of the family (ERNIE's draws timestamps onto the frames,
# which this package does not reproduce; PaddleOCR-VL has none)
HF_VIDEO_CLASS = {"qwen3.5": "Qwen3VLVideoProcessor", "qwen2.5-omni": "Qwen2VLVideoProcessor",
                  "qwen3-omni": "Qwen2VLVideoProcessor", "dots3-note": "Qwen3VLVideoProcessor",
                  "glm-4.1v": "Glm4vVideoProcessor", "glm-4.6v": "Glm46VVideoProcessor"}


def hf_video_processor(preset: str):
    """The family's video processor with the preset's image constants and video bounds."""
    image, video = qvp.PRESETS[preset], qvp.VIDEO_PRESETS[preset]
    return getattr(transformers, HF_VIDEO_CLASS[preset])(
        size={"shortest_edge": video.min_pixels, "longest_edge": video.max_pixels}, patch_size=image.patch_size,
        temporal_patch_size=image.temporal_patch_size, merge_size=image.merge_size,
        image_mean=list(image.image_mean), image_std=list(image.image_std), cap_pixels_per_frame=False)


@pytest.mark.parametrize("preset", list(HF_VIDEO_CLASS))
def test_clips_match_the_family_video_processor(rng, preset):
    """Clips (an odd frame count, so the last block is padded where T = 2; small and upscaled frames) in the
    video preset's mode (torch-uint8) against the family's video processor on CPU tensors: grids equal,
    pixels within 1e-5."""
    from conftest import load_hwc

    photo = torch.from_numpy(load_hwc("coffee").copy()).permute(2, 0, 1)
    clips = [torch.stack([photo[:, 8 * i:8 * i + 300, 16 * i:16 * i + 420] for i in range(5)]),
             torch.from_numpy(rng.integers(0, 256, (4, 3, 40, 90), dtype=np.uint8))]
    hf = hf_video_processor(preset)
    for clip in clips:
        want = hf(videos=[clip], return_tensors="pt", do_sample_frames=False)
        pixels, grid = qvp.preprocess_videos(clip, preset)
        assert torch.equal(grid, want["video_grid_thw"].to(torch.int64)), (preset, grid.tolist())
        assert (pixels - want["pixel_values_videos"]).abs().max().item() <= PV_ATOL, preset


# ------------------------------------------------------------------------------------------ processors

SPECIAL = ["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|image|>", "<|video|>",
           "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>", "<|end_of_video|>",
           "<|IMAGE_PLACEHOLDER|>", "<|IMAGE_START|>", "<|IMAGE_END|>", "<|VIDEO_PLACEHOLDER|>", "<|VIDEO_START|>",
           "<|VIDEO_END|>", "<|imgpad|>", "<|IMAGE|>", "<|VIDEO|>", "<|AUDIO|>", "<|vision_bos|>", "<|vision_eos|>",
           "<|audio_bos|>", "<|audio_eos|>", "<|audio_comp_pad|>"]
WORDS = "describe the picture and compare it with".split()


def tiny_tokenizer(**tokens: str):
    """A word-level tokenizer built offline holding every family's special tokens; ``tokens`` become its
    named ones (``image_token=...``), which some processors read instead of a fixed string."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "<|endoftext|>": 1, **{t: i + 2 for i, t in enumerate(SPECIAL + WORDS)}}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    named = dict(extra_special_tokens=tokens) if tokens else {}
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="<|endoftext|>",
                                   additional_special_tokens=SPECIAL, **named)


OMNI_TOKENS = dict(image_token="<|IMAGE|>", video_token="<|VIDEO|>", audio_token="<|AUDIO|>",
                   vision_bos_token="<|vision_bos|>", vision_eos_token="<|vision_eos|>",
                   audio_bos_token="<|audio_bos|>", audio_eos_token="<|audio_eos|>")
# (processor class, preset, the tokenizer's named tokens, one image's placeholder in the text, other parts)
PROCESSORS = [
    ("Qwen3VLProcessor", "qwen3.5", {}, "<|vision_start|><|image_pad|><|vision_end|>",
     {"video_processor": "Qwen3VLVideoProcessor"}),
    ("Qwen2_5OmniProcessor", "qwen2.5-omni", OMNI_TOKENS, "<|vision_bos|><|IMAGE|><|vision_eos|>",
     {"video_processor": "Qwen2VLVideoProcessor", "feature_extractor": "WhisperFeatureExtractor"}),
    ("Qwen3OmniMoeProcessor", "qwen3-omni", OMNI_TOKENS, "<|vision_bos|><|IMAGE|><|vision_eos|>",
     {"video_processor": "Qwen2VLVideoProcessor", "feature_extractor": "WhisperFeatureExtractor"}),
    ("Dots3NoteProcessor", "dots3-note", {}, "<|imgpad|>",
     {"video_processor": "Qwen3VLVideoProcessor", "feature_extractor": "WhisperFeatureExtractor"}),
    ("Glm4vProcessor", "glm-4.1v", {}, "<|begin_of_image|><|image|><|end_of_image|>",
     {"video_processor": "Glm4vVideoProcessor"}),
    ("Glm46VProcessor", "glm-4.6v", {}, "<|begin_of_image|><|image|><|end_of_image|>",
     {"video_processor": "Glm46VVideoProcessor"}),
    ("PaddleOCRVLProcessor", "paddleocr-vl", {"image_token": "<|IMAGE_PLACEHOLDER|>"},
     "<|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>", {}),
    ("Ernie4_5_VLMoeProcessor", "ernie-4.5-vl",
     {"image_token": "<|IMAGE_PLACEHOLDER|>", "video_token": "<|VIDEO_PLACEHOLDER|>",
      "image_start_token": "<|IMAGE_START|>", "image_end_token": "<|IMAGE_END|>",
      "video_start_token": "<|VIDEO_START|>", "video_end_token": "<|VIDEO_END|>"},
     "<|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>", {"video_processor": "Ernie4_5_VLMoeVideoProcessor"}),
]


@pytest.mark.parametrize("cls_name,preset,tokens,placeholder,parts", [pytest.param(*p, id=p[1]) for p in PROCESSORS])
def test_adapter_inside_the_family_processor_gives_stock_input_ids(rng, cls_name, preset, tokens, placeholder,
                                                                   parts):
    """The adapter as the ``image_processor`` of each family's transformers processor (built with a tiny
    tokenizer): every output equal to the stock processor's (``input_ids``, masks, grids, token types),
    pixels within 1e-5."""
    stock_images = hf_image_processor(preset, "pil")
    ours_images = HFQwenImageProcessor.from_hf(stock_images)
    assert ours_images.config == qvp.PRESETS[preset]
    cls = getattr(transformers, cls_name)

    def build(image_processor):
        others = {k: getattr(transformers, v)() for k, v in parts.items()}
        return cls(image_processor=image_processor, tokenizer=tiny_tokenizer(**tokens), **others)

    images = [im for im in family_images(rng) if min(im.shape[:2]) > 3][:4]
    text = [f"{placeholder} describe the picture", f"compare {placeholder} with {placeholder} and {placeholder}"]
    a = build(stock_images)(text=text, images=images, return_tensors="pt", padding=True)
    b = build(ours_images)(text=text, images=images, return_tensors="pt", padding=True)
    assert sorted(a.keys()) == sorted(b.keys())
    for key in a:
        if key == "pixel_values":
            assert a[key].shape == b[key].shape
            assert (a[key] - b[key]).abs().max().item() <= PV_ATOL
        else:
            assert torch.equal(a[key], b[key]), key


# ------------------------------------------------------------------------------------------ towers

@pytest.mark.parametrize("preset", NEW_PRESETS)
def test_tower_inputs_equal_what_the_family_tower_derives(preset):
    """``tower_inputs=True`` gives what each family's tower derives from ``grid_thw`` in transformers
    (``vision_utils``): per-frame ``cu_seqlens``; position ids in merge-window order, raster (merge 1) for
    PaddleOCR-VL; window indices only for Qwen2.5-Omni (window 112, as Qwen2.5-VL)."""
    from transformers import vision_utils as vu

    g = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, 130, 260), generator=g, dtype=torch.uint8),
              torch.randint(0, 256, (3, 700, 300), generator=g, dtype=torch.uint8)]
    batch = qvp.QwenVisionPreprocessor(preset)(images, tower_inputs=True)
    kw, grid = qvp.tower_kwargs(batch, "image"), batch.grid_thw
    merge = 1 if preset == "paddleocr-vl" else 2
    assert torch.equal(kw["cu_seqlens"], vu.get_vision_cu_seqlens(grid))
    assert torch.equal(kw["position_ids"], vu.get_vision_position_ids(grid, merge))
    assert ("window_index" in kw) == (preset == "qwen2.5-omni")
    if preset == "qwen2.5-omni":
        win, cu_win = vu.get_vision_window_index(grid, 2, 112, 14)
        assert torch.equal(kw["window_index"], win) and torch.equal(kw["cu_window_seqlens"], cu_win)


# ------------------------------------------------------------------------------------------ GLM frame sampling

@pytest.mark.parametrize("rule", ["glm4v", "glm46v"])
def test_glm_frame_sampling_equals_transformers(rng, rule):
    """``sample_frame_indices(rule="glm4v" | "glm46v")`` against ``Glm4vVideoProcessor`` /
    ``Glm46VVideoProcessor.sample_frames`` on random lengths, frame rates and durations (given or not;
    short, long, past GLM-4.1V's 300 s cap and GLM-4.6V's 2400 s), and requested rates for GLM-4.1V."""
    from transformers.video_utils import VideoMetadata

    processor = (transformers.Glm4vVideoProcessor if rule == "glm4v" else transformers.Glm46VVideoProcessor)()
    cases = [(int(rng.integers(1, 4000)), float(rng.choice([8, 23.976, 24, 25, 29.97, 30, 60])),
              None if rng.random() < 0.3 else float(rng.uniform(0.05, 3000))) for _ in range(150)]
    cases += [(1, 24.0, None), (2, 30.0, 0.05), (20000, 5.0, None), (9000, 30.0, 300.0), (9001, 30.0, 300.04),
              (100, 1.0, 2500.0), (50, 25.0, 0.0)]
    for total, video_fps, duration in cases:
        meta = VideoMetadata(total_num_frames=total, fps=video_fps, duration=duration)
        for fps in ((None, 1.0, 2.0, 0.5) if rule == "glm4v" else (None,)):
            want = processor.sample_frames(meta, fps=fps).tolist()
            if not want:
                with pytest.raises(ValueError, match="samples no frames"):
                    sizing.sample_frame_indices(total, video_fps, fps=fps, rule=rule, duration=duration)
                continue
            got = sizing.sample_frame_indices(total, video_fps, fps=fps, rule=rule, duration=duration)
            assert got == want, (total, video_fps, duration, fps)
    with pytest.raises(ValueError, match="video_fps"):
        sizing.sample_frame_indices(100, rule=rule)
    with pytest.raises(ValueError, match="takes no num_frames"):
        sizing.sample_frame_indices(100, 24.0, num_frames=8, rule=rule)


@pytest.mark.parametrize("preset,cls_name", [("glm-4.1v", "Glm4vProcessor"), ("glm-4.6v", "Glm46VProcessor")])
def test_glm_video_through_the_family_processor(rng, preset, cls_name):
    """A clip with its metadata through each GLM processor, the stock video processor against the adapter's
    (``HFQwenVideoProcessor.from_hf``): the same frames sampled, ``input_ids`` (with GLM's per-frame
    timestamps) and grids equal, pixels within 1e-5."""
    from transformers.video_utils import VideoMetadata

    from qwen_vis_prep.hf_adapter import HFQwenVideoProcessor

    clip = torch.from_numpy(rng.integers(0, 256, (61, 3, 48, 80), dtype=np.uint8))
    meta = VideoMetadata(total_num_frames=61, fps=24.0, duration=61 / 24)
    stock_video = hf_video_processor(preset)
    ours_video = HFQwenVideoProcessor.from_hf(stock_video)
    assert ours_video.video_config.sampling_rule == qvp.VIDEO_PRESETS[preset].sampling_rule
    images = hf_image_processor(preset, "pil")
    cls = getattr(transformers, cls_name)
    text = ["<|begin_of_video|><|video|><|end_of_video|> describe the picture"]
    out = []
    for video in (stock_video, ours_video):
        processor = cls(image_processor=images, tokenizer=tiny_tokenizer(), video_processor=video)
        out.append(processor(text=text, videos=[clip], video_metadata=[meta], return_tensors="pt"))
    a, b = out
    assert sorted(a.keys()) == sorted(b.keys())
    for key in a:
        if key == "pixel_values_videos":
            assert (a[key] - b[key]).abs().max().item() <= PV_ATOL
        else:
            assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("preset", list(HF_VIDEO_CLASS))
def test_video_processor_files_read_back(tmp_path, preset):
    """``video_preprocessor_config.json`` as each family's video processor class saves it (in a model
    directory, or its dict) gives the adapter the stock processor's video config: the preset's."""
    from qwen_vis_prep.hf_adapter import HFQwenVideoProcessor

    stock = hf_video_processor(preset)
    stock.save_pretrained(tmp_path)
    assert (tmp_path / "video_preprocessor_config.json").is_file()
    from_dir = HFQwenVideoProcessor.from_pretrained(tmp_path)
    from_dict = HFQwenVideoProcessor.from_pretrained(json.loads(stock.to_json_string()))
    want = HFQwenVideoProcessor.from_hf(stock)
    for ours in (from_dir, from_dict):
        assert ours.video_config == want.video_config and ours.config == want.config
        assert ours.do_sample_frames == stock.do_sample_frames
    preset_video = qvp.VIDEO_PRESETS[preset]
    for field in ("min_pixels", "max_pixels", "sizing", "sampling_rule"):
        assert getattr(from_dir.video_config, field) == getattr(preset_video, field), field
    with pytest.raises(PretrainedConfigError, match="Ernie4_5_VLMoeVideoProcessor"):
        HFQwenVideoProcessor.from_pretrained({"video_processor_type": "Ernie4_5_VLMoeVideoProcessor"})


def test_model_directory_gives_image_and_video_configs(tmp_path):
    """A checkpoint directory with both files (as GLM-4.6V's stock processors save them) gives the module
    the image config of one and the video config (sizing, GLM-4.6V's sampling) of the other."""
    hf_image_processor("glm-4.6v", "torchvision").save_pretrained(tmp_path)
    hf_video_processor("glm-4.6v").save_pretrained(tmp_path)
    prep = qvp.QwenVisionPreprocessor.from_pretrained(tmp_path)
    assert prep.config == qvp.PRESETS["glm-4.6v"]
    assert prep.video_config.sampling_rule == "glm46v" and prep.video_config.sizing == "qwen3-vl"
    assert (prep.video_config.min_pixels, prep.video_config.max_pixels) == (12544, 47040000)


@pytest.mark.cuda
@pytest.mark.parametrize("preset", NEW_PRESETS)
def test_cuda_equals_the_cpu_reference(rng, preset):
    """On CUDA (Triton), each family's images and a clip give the CPU reference's bits."""
    config = qvp.PRESETS[preset]
    images = [torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1) for im in family_images(rng)]
    want = qvp.preprocess(images, config, backend="reference").pixel_values
    got = qvp.preprocess([im.cuda() for im in images], config).pixel_values
    assert torch.equal(got.cpu(), want)
    clip = torch.from_numpy(rng.integers(0, 256, (5, 3, 90, 130), dtype=np.uint8))
    want_clip = qvp.preprocess_videos(clip, preset, backend="reference")[0]
    assert torch.equal(qvp.preprocess_videos(clip.cuda(), preset)[0].cpu(), want_clip)
