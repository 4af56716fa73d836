"""HFQwenImageProcessor as transformers' image processor: same keys, grids and values as the stock PIL
processor, and, inside Qwen2VLProcessor / Qwen2_5_VLProcessor / Qwen3VLProcessor, the same input_ids (so the
placeholder token counts agree). The tokenizer is built offline from a tiny word-level vocabulary."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

import PIL.Image  # noqa: E402
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil  # noqa: E402

from qwen_vis_prep import PRESETS  # noqa: E402
from qwen_vis_prep.hf_adapter import HFQwenImageProcessor, patch_processor  # noqa: E402
from qwen_vis_prep.io import sample_images  # noqa: E402

DATA = Path(__file__).parent / "data"
RELEASED = {"qwen2-vl": DATA / "Qwen2-VL-7B-Instruct", "qwen2.5-vl": DATA / "Qwen2.5-VL-7B-Instruct",
            "qwen3-vl": DATA / "Qwen3-VL-8B-Instruct"}
# float32 rounding of the normalisation: transformers' PIL backend and ours order the float ops differently,
# which moves results (|values| < 2.2) by at most a couple of ulps (2 * 2**-22 ~ 4.8e-7).
NORM_ATOL = 1e-6
SPECIAL = ["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"]
WORDS = "describe the picture and compare it with this one a cat what is in".split()


def _released(preset):
    return json.loads((RELEASED[preset] / "preprocessor_config.json").read_text())


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "<|endoftext|>": 1, **{t: i + 2 for i, t in enumerate(SPECIAL + WORDS)}}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="<|endoftext|>",
                                   additional_special_tokens=SPECIAL)


@pytest.fixture(scope="module")
def pil_images():
    """The bundled samples as PIL images (JPEG RGB, grayscale PNG, RGBA PNG), odd sizes included."""
    out = []
    for f in sample_images():
        with PIL.Image.open(f) as im:
            im.load()
            out.append(im.copy())
    return out


@pytest.fixture(scope="module")
def hf_composites_alpha():
    """Whether the installed transformers composites a PIL RGBA image onto white, as qwen_vis_prep does (5.24
    does; 5.17 does not). Where it does not, pixel values of images with alpha are left out of comparisons."""
    clear_black = PIL.Image.new("RGBA", (56, 56), (0, 0, 0, 0))
    return bool(Qwen2VLImageProcessorPil()(clear_black, return_tensors="pt")["pixel_values"][0, 0] > 0)


def _assert_pixels_match(ours, stock, grid, images, composites_alpha):
    """Row blocks of each image within NORM_ATOL, skipping images with alpha if HF handles alpha otherwise."""
    start = 0
    for img, rows in zip(images, grid.prod(-1).tolist()):
        if composites_alpha or "A" not in img.getbands():
            torch.testing.assert_close(ours[start:start + rows], stock[start:start + rows], rtol=0, atol=NORM_ATOL)
        start += rows
    assert start == len(ours) == len(stock)


def _processor(cls_name, preset, image_processor, tokenizer):
    import transformers

    cls = getattr(transformers, cls_name)
    video_cls = (transformers.Qwen3VLVideoProcessor if preset == "qwen3-vl" else transformers.Qwen2VLVideoProcessor)
    return cls(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_cls())


@pytest.mark.parametrize("cls_name,preset", [("Qwen2VLProcessor", "qwen2-vl"),
                                             ("Qwen2_5_VLProcessor", "qwen2.5-vl"),
                                             ("Qwen3VLProcessor", "qwen3-vl")])
def test_processor_input_ids_identical_to_stock(cls_name, preset, tokenizer, pil_images, hf_composites_alpha):
    stock = _processor(cls_name, preset, Qwen2VLImageProcessorPil(**_released(preset)), tokenizer)
    ours = _processor(cls_name, preset, HFQwenImageProcessor.from_pretrained(RELEASED[preset]), tokenizer)
    text = ["<|vision_start|><|image_pad|><|vision_end|> describe the picture",
            "compare <|vision_start|><|image_pad|><|vision_end|> with <|vision_start|><|image_pad|><|vision_end|>",
            "what is in <|vision_start|><|image_pad|><|vision_end|> <|vision_start|><|image_pad|><|vision_end|>"]
    a = stock(text=text, images=pil_images, return_tensors="pt", padding=True)
    b = ours(text=text, images=pil_images, return_tensors="pt", padding=True)
    assert sorted(a.keys()) == sorted(b.keys())
    for key in a:
        if key == "pixel_values":
            _assert_pixels_match(b[key], a[key], a["image_grid_thw"], pil_images, hf_composites_alpha)
        else:
            assert torch.equal(a[key], b[key]), key
    image_pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    merge = ours.image_processor.merge_size
    assert int((b["input_ids"] == image_pad).sum()) == int(b["image_grid_thw"].prod(-1).sum()) // merge ** 2


def test_standalone_call_matches_stock(pil_images, hf_composites_alpha):
    ours = HFQwenImageProcessor.from_pretrained(RELEASED["qwen2-vl"])
    stock = Qwen2VLImageProcessorPil(**_released("qwen2-vl"))
    a, b = stock(pil_images, return_tensors="pt"), ours(images=pil_images, return_tensors="pt")
    assert list(b.keys()) == ["pixel_values", "image_grid_thw"]
    assert torch.equal(a["image_grid_thw"], b["image_grid_thw"])
    _assert_pixels_match(b["pixel_values"], a["pixel_values"], a["image_grid_thw"], pil_images, hf_composites_alpha)


@pytest.mark.parametrize("kwargs", [
    pytest.param({"min_pixels": 100_000, "max_pixels": 150_000}, id="min-max-pixels"),
    pytest.param({"size": {"shortest_edge": 20_000, "longest_edge": 40_000}}, id="size"),
    pytest.param({"do_normalize": False}, id="no-normalize"),
    pytest.param({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "patch_size": 16}, id="qwen3-ish"),
])
def test_per_call_overrides_match_stock(kwargs, pil_images):
    ours = HFQwenImageProcessor("qwen2-vl")
    stock = Qwen2VLImageProcessorPil(**ours.to_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # HF deprecates per-call min/max_pixels
        a = stock(pil_images[:2], return_tensors="pt", **kwargs)
    b = ours(pil_images[:2], return_tensors="pt", **kwargs)
    assert torch.equal(a["image_grid_thw"], b["image_grid_thw"])
    torch.testing.assert_close(b["pixel_values"], a["pixel_values"], rtol=0, atol=NORM_ATOL)
    assert ours.config == PRESETS["qwen2-vl"]  # a per-call override does not stick


def test_input_forms_numpy_chw_hwc_tensor_nested(pil_images):
    ours = HFQwenImageProcessor("qwen2-vl")
    hwc = np.array(pil_images[0])  # writable, so torch.from_numpy does not warn
    chw = np.ascontiguousarray(hwc.transpose(2, 0, 1))
    ref = ours(pil_images[0], return_tensors="pt")
    for images in ([hwc], [chw], torch.from_numpy(chw), [[torch.from_numpy(hwc)]], np.stack([hwc, hwc])):
        out = ours(images, return_tensors="pt")
        n = len(out["image_grid_thw"])
        assert torch.equal(out["image_grid_thw"], ref["image_grid_thw"].repeat(n, 1))
        assert torch.equal(out["pixel_values"], ref["pixel_values"].repeat(n, 1))
    explicit = ours([hwc], input_data_format="channels_last", return_tensors="pt")
    assert torch.equal(explicit["pixel_values"], ref["pixel_values"])


def test_paths_are_decoded_like_pil_images(pil_images):
    ours = HFQwenImageProcessor("qwen3-vl")
    files = [str(f) for f in sample_images()]
    a, b = ours(files, return_tensors="pt"), ours(pil_images, return_tensors="pt")
    assert torch.equal(a["image_grid_thw"], b["image_grid_thw"])
    assert torch.equal(a["pixel_values"], b["pixel_values"])


def test_return_tensors_np_and_device_kwarg(pil_images):
    ours = HFQwenImageProcessor("qwen2-vl")
    out = ours(pil_images[:1], return_tensors="np", device="cpu")
    assert isinstance(out["pixel_values"], np.ndarray) and out["pixel_values"].dtype == np.float32
    out = ours(pil_images[:1], return_tensors="pt", device="cpu")
    assert out["pixel_values"].device.type == "cpu" and out["image_grid_thw"].dtype == torch.int64


@pytest.mark.cuda
def test_device_cuda_keeps_pixels_on_gpu_and_matches_cpu(pil_images):
    ours = HFQwenImageProcessor("qwen2-vl")
    gpu = ours(pil_images, return_tensors="pt", device="cuda")
    cpu = ours(pil_images, return_tensors="pt")
    assert gpu["pixel_values"].is_cuda and not gpu["image_grid_thw"].is_cuda
    assert torch.equal(gpu["image_grid_thw"], cpu["image_grid_thw"])
    torch.testing.assert_close(gpu["pixel_values"].cpu(), cpu["pixel_values"], rtol=0, atol=NORM_ATOL)


def test_hf_attributes_read_and_write_config():
    ours = HFQwenImageProcessor.from_pretrained(RELEASED["qwen3-vl"])
    assert (ours.patch_size, ours.merge_size, ours.temporal_patch_size) == (16, 2, 2)
    assert ours.size == {"shortest_edge": 65536, "longest_edge": 16777216}
    ours.max_pixels = 1_000_000  # the usual way to cap the token budget on a loaded processor
    assert ours.config.max_pixels == 1_000_000 and ours.size["longest_edge"] == 1_000_000
    ours.size = {"shortest_edge": 4096, "longest_edge": 500_000}
    assert (ours.min_pixels, ours.max_pixels) == (4096, 500_000)
    with pytest.raises(ValueError, match="min_pixels must be <= max_pixels"):
        ours.min_pixels = 10**9


def test_get_number_of_image_patches_matches_stock():
    ours = HFQwenImageProcessor.from_pretrained(RELEASED["qwen2.5-vl"])
    stock = Qwen2VLImageProcessorPil(**_released("qwen2.5-vl"))
    for h, w in [(10, 10), (480, 640), (2000, 3000), (6000, 6000)]:
        assert ours.get_number_of_image_patches(h, w) == stock.get_number_of_image_patches(h, w, {})
    kw = {"max_pixels": 200_000}
    assert ours.get_number_of_image_patches(2000, 3000, kw) == stock.get_number_of_image_patches(2000, 3000, kw)


def test_to_dict_is_loadable_by_stock_transformers(tmp_path, tokenizer):
    ours = HFQwenImageProcessor("qwen3-vl")
    ours.save_pretrained(tmp_path)
    from transformers import AutoImageProcessor

    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert loaded.patch_size == 16 and loaded.size["longest_edge"] == 16777216
    # AutoImageProcessor loads transformers' torchvision backend, whose CPU resize is torch's uint8 kernel
    assert HFQwenImageProcessor.from_hf(loaded).config == PRESETS["qwen3-vl"].replace(resize_mode="torch-uint8")
    # the processor's repr serialises every sub-processor
    assert "HFQwenImageProcessor" in repr(_processor("Qwen3VLProcessor", "qwen3-vl", ours, tokenizer))


def test_patch_processor_swaps_in_adapter(tokenizer, pil_images):
    stock = _processor("Qwen2VLProcessor", "qwen2-vl", Qwen2VLImageProcessorPil(**_released("qwen2-vl")), tokenizer)
    text = ["describe <|vision_start|><|image_pad|><|vision_end|>"]
    a = stock(text=text, images=pil_images[1:2], return_tensors="pt")
    patched = patch_processor(stock)
    assert isinstance(patched.image_processor, HFQwenImageProcessor)
    b = patched(text=text, images=pil_images[1:2], return_tensors="pt")
    assert torch.equal(a["input_ids"], b["input_ids"])


def test_unknown_kwarg_warns_and_bad_values_raise(pil_images):
    ours = HFQwenImageProcessor("qwen2-vl")
    with pytest.warns(UserWarning, match="frobnicate"):
        ours(pil_images[:1], frobnicate=True)
    with pytest.raises(ValueError, match="resample"):
        ours(pil_images[:1], resample=2)
    with pytest.raises(ValueError, match="data_format"):
        ours(pil_images[:1], data_format="channels_last")
    with pytest.raises(ValueError, match="images=... and/or videos="):
        ours()


def test_videos_go_through_qwen_vis_prep_video():
    video = pytest.importorskip("qwen_vis_prep.video")
    ours = HFQwenImageProcessor("qwen2-vl")
    clip = torch.randint(0, 256, (4, 3, 60, 90), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = ours(videos=[clip], return_tensors="pt")
    assert list(out.keys()) == ["pixel_values_videos", "video_grid_thw"]
    pv, grid = video.preprocess_videos([clip], ours.config)
    assert torch.equal(out["video_grid_thw"], grid) and torch.equal(out["pixel_values_videos"], pv)
    from transformers import Qwen2VLVideoProcessor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = Qwen2VLVideoProcessor(**_released("qwen2-vl"))(videos=[clip], return_tensors="pt",
                                                            do_sample_frames=False)
    assert torch.equal(out["video_grid_thw"], hf["video_grid_thw"])


# ------------------------------------------------------------------------------------------------ videos

@pytest.fixture(scope="module")
def time_tokenizer():
    """A word-level tokenizer that spells numbers digit by digit, so Qwen3-VL's ``<1.2 seconds>`` markers
    differ in ``input_ids`` whenever the times differ."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = WORDS + ["seconds", "<", ">", "."] + [str(d) for d in range(10)]
    vocab = {"[UNK]": 0, "<|endoftext|>": 1, **{t: i + 2 for i, t in enumerate(SPECIAL + words)}}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(),
                                                pre_tokenizers.Digits(individual_digits=True)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="<|endoftext|>",
                                   additional_special_tokens=SPECIAL)


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    """A 50-frame 24 fps clip (96x64, MPEG-4) written with PyAV: frame k is gray level 5k with a noise patch."""
    av = pytest.importorskip("av")
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=24)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for k in range(50):
            img = np.full((64, 96, 3), 5 * k, np.uint8)
            img[10:30, 10:50] = rng.integers(0, 256, (20, 40, 3))
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


VIDEO_PROCESSORS = [pytest.param("Qwen3VLProcessor", "Qwen3VLVideoProcessor", id="qwen3-vl"),
                    pytest.param("Qwen2_5_VLProcessor", "Qwen2VLVideoProcessor", id="qwen2.5-vl"),
                    pytest.param("Qwen2VLProcessor", "Qwen2VLVideoProcessor", id="qwen2-vl")]


def _stock_video_processor(video_cls):
    import transformers

    cls = getattr(transformers, video_cls)
    if video_cls == "Qwen3VLVideoProcessor":
        return cls(size={"shortest_edge": 32 * 32 * 4, "longest_edge": 32 * 32 * 16 * 50}, cap_pixels_per_frame=False)
    return cls(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16, cap_pixels_per_frame=False)


@pytest.mark.parametrize("cls_name, video_cls", VIDEO_PROCESSORS)
def test_video_file_gives_the_stock_input_ids(cls_name, video_cls, clip_file, time_tokenizer):
    """A video file through our video processor inside the stock processor class gives the stock pipeline's
    ``input_ids`` (Qwen3-VL's per-block ``<t seconds>`` markers included), grids, Qwen2.5-VL's
    ``second_per_grid_ts``, and pixels within 1e-5. The stock pipeline here is transformers' own PyAV
    ``load_video`` (TorchCodec, its default decoder, is not installed) and the stock video processor sampling
    from the decoded frames with their metadata."""
    import transformers
    from transformers import Qwen2VLImageProcessor
    from transformers.video_utils import load_video as hf_load_video

    from qwen_vis_prep.hf_adapter import HFQwenVideoProcessor

    cls = getattr(transformers, cls_name)
    stock_vp = _stock_video_processor(video_cls)
    stock = cls(image_processor=Qwen2VLImageProcessor(), tokenizer=time_tokenizer, video_processor=stock_vp)
    ours = cls(image_processor=Qwen2VLImageProcessor(), tokenizer=time_tokenizer,
               video_processor=HFQwenVideoProcessor.from_hf(stock_vp))
    text = ["describe <|vision_start|><|video_pad|><|vision_end|> what is in it"]
    frames, metadata = hf_load_video(str(clip_file), backend="pyav")
    sampling = cls_name == "Qwen3VLProcessor"  # the stock defaults: Qwen3-VL samples 2 fps, Qwen2-VL keeps all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = stock(text=text, videos=[frames], video_metadata=[metadata], do_sample_frames=sampling,
                  return_tensors="pt")
    b = ours(text=text, videos=[str(clip_file)], return_tensors="pt")
    assert sorted(a.keys()) == sorted(b.keys())
    for key in a:
        if key == "pixel_values_videos":
            torch.testing.assert_close(b[key], a[key], atol=1e-5, rtol=0)
        else:
            assert torch.equal(torch.as_tensor(a[key]), torch.as_tensor(b[key])), key
    if sampling:
        assert "seconds" in time_tokenizer.decode(b["input_ids"][0])
        assert int(b["video_grid_thw"][0, 0]) == 2  # 50 frames at 24 fps sampled at 2 fps: 4 frames
    if cls_name == "Qwen2_5_VLProcessor":
        assert "second_per_grid_ts" in b


def test_in_memory_clip_with_metadata_samples_as_stock(clip_file):
    """Decoded frames with their metadata are sampled by the stock rule (Qwen3-VL: 2 fps of the source rate),
    and the metadata returned carries the sampled indices."""
    from transformers.video_utils import load_video as hf_load_video

    from qwen_vis_prep.hf_adapter import HFQwenVideoProcessor

    stock_vp = _stock_video_processor("Qwen3VLVideoProcessor")
    frames, metadata = hf_load_video(str(clip_file), backend="pyav")
    a = stock_vp(videos=[frames], video_metadata=[metadata], return_metadata=True, return_tensors="pt")
    frames, metadata = hf_load_video(str(clip_file), backend="pyav")
    b = HFQwenVideoProcessor.from_hf(stock_vp)(videos=[frames], video_metadata=[metadata], return_metadata=True,
                                               return_tensors="pt")
    assert torch.equal(a["video_grid_thw"], b["video_grid_thw"])
    torch.testing.assert_close(b["pixel_values_videos"], a["pixel_values_videos"], atol=1e-5, rtol=0)
    assert list(a["video_metadata"][0].frames_indices) == list(b["video_metadata"][0].frames_indices)
    assert b["video_metadata"][0].fps == pytest.approx(24.0)


def test_video_files_that_fail_are_named_by_position(clip_file, tmp_path):
    """Encoded clips given as bytes are named ``<bytes #i>`` by their place in the list, paths by their path."""
    from qwen_vis_prep.hf_adapter import HFQwenVideoProcessor
    from qwen_vis_prep.video_decode import VideoLoadError

    vp = HFQwenVideoProcessor.from_hf(_stock_video_processor("Qwen3VLVideoProcessor"), decoder="pyav")
    good, bad = clip_file.read_bytes(), b"not a video at all" * 50
    with pytest.raises(VideoLoadError, match=r"^<bytes #1>: "):
        vp(videos=[good, bad])
    missing = tmp_path / "missing.mp4"
    with pytest.raises(VideoLoadError, match=rf"^{re.escape(str(missing))}: no such file"):
        vp(videos=[str(clip_file), str(missing)])


def test_patch_processor_swaps_the_video_processor_too(tokenizer):
    import transformers

    from qwen_vis_prep.hf_adapter import HFQwenVideoProcessor

    stock = transformers.Qwen3VLProcessor(image_processor=Qwen2VLImageProcessorPil(**_released("qwen3-vl")),
                                          tokenizer=tokenizer, video_processor=_stock_video_processor(
                                              "Qwen3VLVideoProcessor"))
    patched = patch_processor(stock)
    assert isinstance(patched.video_processor, HFQwenVideoProcessor)
    vc = patched.video_processor.video_config
    assert (vc.sizing, vc.fps, vc.resize_mode, patched.video_processor.merge_size) == ("qwen3-vl", 2, "torch-uint8", 2)
