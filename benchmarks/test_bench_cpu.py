"""CPU throughput: qwen_vis_prep vs transformers' Qwen2-VL image processors and Qwen2-VL / Qwen3-VL video
processors.

Run: ``pytest benchmarks --benchmark-only`` (add ``--benchmark-disable`` for a one-shot smoke run).

Every provider gets the same input, a list of ``[H, W, 3] uint8`` numpy arrays (what a decoder hands over),
and the ``qwen2-vl`` preset settings (min_pixels 3136, max_pixels 12845056; 1080x1920 -> 1092x1932), or a
serving budget (max_pixels ``28*28*1280``; 1080x1920 -> 728x1316).
Images are real photos, not noise: scikit-image's bundled ``astronaut``, ``chelsea``, ``coffee`` and
``rocket`` resized with Pillow BICUBIC to the benchmark sizes (stretched where the aspect ratio differs;
the resize cost does not depend on the content).

Cases, each a benchmark group comparing the providers:

* ``1x1080p``: one 1080x1920 image;
* ``1x1080p-serving``: the same image to the serving budget (a downscale);
* ``8x1080p``: a list of 8 such images (four photos, twice);
* ``16-mixed``: 16 images from 300x400 up to 1200x1600 (linearly spaced).

Providers: ``ours`` (``qvp.preprocess(images, cfg)``, CPU, ``resize_mode="pil"``: the native backend, the
compiled resampler), ``ours-torch-uint8`` (the same with ``resize_mode="torch-uint8"``), ``ours-pillow``
(pil mode on the Pillow backend, the fallback where the compiled resampler is not built), ``hf-pil``
(``Qwen2VLImageProcessorPil``) and ``hf-torchvision`` (``Qwen2VLImageProcessor`` on the CPU). Before timing,
each case checks once that ``ours`` and ``ours-pillow`` give HF PIL's ``grid_thw`` and pixel values (1e-5)
and ``ours-torch-uint8`` HF torchvision's, so a fast wrong answer cannot win. The timings record the thread
count and library versions in ``extra_info``; medians are the number to read (the CPU may be shared).

The other families (``test_cpu_family``, group ``family-<preset>``): one 1080p photo with each new
preset's own config (its sizing rule and budget) against that family's transformers image processor, both
backends (``hf-pil``: ``<Class>Pil``; ``hf-torchvision``: ``<Class>``): Qwen3.5, Qwen2.5-Omni, Qwen3-Omni and
dots3-note use ``Qwen2VLImageProcessor``, GLM-4.1V/4.6V ``Glm4vImageProcessor`` / ``Glm46VImageProcessor``,
PaddleOCR-VL and ERNIE-4.5-VL their own. Checked once before timing against ``hf-pil`` (grid equal, pixels
within 1e-5).

Videos (``test_cpu_video_clip``), two clips of ``[T, 3, H, W]`` uint8 frames panning 8 pixels per frame
across a photo (``astronaut`` resp. ``coffee``, resized as above), built once and cached:

* ``video-16x720p``: 16 frames of 720x1280 (5 rounds);
* ``video-64x1080p``: 64 frames of 1080x1920 (398 MB; 3 rounds).

Every provider gets the frames as they are (``do_sample_frames=False`` for transformers) and the serving
budget of ``28*28*1280`` pixels per frame: ``ours`` (``qvp.preprocess_videos`` with the ``qwen2-vl`` video
config in its own mode, torch-uint8), ``ours-pil`` (the same in pil mode), ``ours-qwen3vl`` (the
``qwen3-vl`` image preset and ``VideoConfig.from_preset("qwen3-vl")``), ``hf-qwen2vl``
(``transformers.Qwen2VLVideoProcessor``) and ``hf-qwen3vl`` (``Qwen3VLVideoProcessor``). Qwen3-VL's bounds
count all frames of a clip (``size["longest_edge"]``, our ``VideoConfig.max_pixels``), so both Qwen3-VL
providers get ``T * 28*28*1280`` and the preset's minimum, 4096 (720x1280 -> 704x1280, 1080x1920 -> 736x1312;
Qwen2-VL: 728x1288, 728x1316). Checked once before timing: ``ours`` against ``hf-qwen2vl`` and
``ours-qwen3vl`` against ``hf-qwen3vl`` (grid equal, pixels within 1e-5: the same torch uint8 resize),
``ours-pil`` against our reference backend bit for bit (the whole 16-frame clip; the first and last 4
frames of the 64-frame one, as the reference backend needs about a second per 1080p frame).

File to patches (``test_cpu_video_file``, groups ``file-16x720p`` and ``file-64x1080p``): each clip is
encoded once per module to a temporary mp4 (PyAV: H.264 ``ultrafast`` CRF 18 where libx264 is built in,
else MPEG-4 part 2; yuv420p, 24 fps), and every frame of it is decoded and preprocessed: ``ours-file``
(``qvp.load_video(path, num_frames=T)`` then ``preprocess_videos`` as ``ours``; PyAV with frame threading
unless TorchCodec is installed) against ``hf-file`` (``transformers.video_utils.load_video(path,
backend="pyav", num_frames=T)`` then ``Qwen2VLVideoProcessor``). Checked once: both give the same grid, and
where ours decodes with PyAV too, the same frames and pixels (1e-5).
``-k "not 64x1080p"`` leaves out the large clip (more than half of a ``--benchmark-disable`` run on 2 cores).
"""

from __future__ import annotations

import functools
import os

import numpy as np
import PIL
import pytest
import torch
import torchvision
import transformers
from PIL import Image

import qwen_vis_prep as qvp

CONFIG = qvp.PRESETS["qwen2-vl"]
SERVING_MAX_PIXELS = 28 * 28 * 1280
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


@functools.lru_cache(maxsize=None)
def photo(name: str, h: int, w: int) -> np.ndarray:
    from skimage import data

    src = getattr(data, name)()
    out = np.array(Image.fromarray(src).resize((w, h), Image.Resampling.BICUBIC))
    out.setflags(write=False)
    return out


def case_images(case: str) -> list[np.ndarray]:
    if case in ("1x1080p", "1x1080p-serving"):
        return [photo("astronaut", 1080, 1920)]
    if case == "8x1080p":
        return [photo(PHOTOS[i % 4], 1080, 1920) for i in range(8)]
    if case == "16-mixed":
        return [photo(PHOTOS[i % 4], 300 + 60 * i, 400 + 80 * i) for i in range(16)]
    raise AssertionError(case)


def hf_kwargs(config: qvp.VisionPreprocessConfig) -> dict:
    return dict(min_pixels=config.min_pixels, max_pixels=config.max_pixels, patch_size=config.patch_size,
                temporal_patch_size=config.temporal_patch_size, merge_size=config.merge_size,
                image_mean=list(config.image_mean), image_std=list(config.image_std))


def case_config(case: str) -> qvp.VisionPreprocessConfig:
    return CONFIG.replace(max_pixels=SERVING_MAX_PIXELS) if case.endswith("-serving") else CONFIG


@functools.lru_cache(maxsize=None)
def hf_processor(kind: str, case: str):
    if kind == "hf-pil":
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        return Qwen2VLImageProcessorPil(**hf_kwargs(case_config(case)))
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    return Qwen2VLImageProcessor(**hf_kwargs(case_config(case)))


def provider_fn(provider: str, case: str):
    images = case_images(case)
    if provider == "ours":
        return lambda: qvp.preprocess(images, case_config(case))
    if provider == "ours-torch-uint8":
        config = case_config(case).replace(resize_mode="torch-uint8")
        return lambda: qvp.preprocess(images, config)
    if provider == "ours-pillow":
        return lambda: qvp.preprocess(images, case_config(case), backend="pillow")
    proc = hf_processor(provider, case)
    return lambda: proc(images, return_tensors="pt")


# each of our modes against the transformers backend whose resize it reproduces
COUNTERPART = {"ours": "hf-pil", "ours-pillow": "hf-pil", "ours-torch-uint8": "hf-torchvision"}


@functools.lru_cache(maxsize=None)
def check_case(case: str, provider: str) -> None:
    """Once per case and mode: ours == its HF counterpart (grid exactly, pixels to 1e-5)."""
    ours = provider_fn(provider, case)()
    ref = provider_fn(COUNTERPART[provider], case)()
    assert torch.equal(ours.grid_thw, ref["image_grid_thw"])
    assert (ours.pixel_values - ref["pixel_values"]).abs().max().item() <= 1e-5


ROUNDS = {"1x1080p": 10, "1x1080p-serving": 10, "8x1080p": 5, "16-mixed": 5}


@pytest.mark.parametrize("provider", ["ours", "ours-torch-uint8", "ours-pillow", "hf-pil", "hf-torchvision"])
@pytest.mark.parametrize("case", ["1x1080p", "1x1080p-serving", "8x1080p", "16-mixed"])
def test_cpu_preprocess(benchmark, case, provider):
    if provider in COUNTERPART:
        check_case(case, provider)
    images = case_images(case)
    benchmark.group = case
    benchmark.extra_info.update(
        provider=provider, images=len(images), pixels=int(sum(i.shape[0] * i.shape[1] for i in images)),
        torch_threads=torch.get_num_threads(), torch=torch.__version__, torchvision=torchvision.__version__,
        pillow=PIL.__version__, transformers=transformers.__version__, qwen_vis_prep=qvp.__version__,
        input="list of HWC uint8 numpy arrays (skimage photos resized with Pillow BICUBIC)")
    out = benchmark.pedantic(provider_fn(provider, case), rounds=ROUNDS[case], warmup_rounds=2, iterations=1)
    grid = out.grid_thw if provider.startswith("ours") else out["image_grid_thw"]
    assert grid.shape == (len(images), 3)


# ------------------------------------------------------------------------------------------------ video
VIDEO_MAX_PIXELS = 28 * 28 * 1280  # serving budget per frame: 720x1280 -> 728x1288, 1080x1920 -> 728x1316
QWEN3_CONFIG = qvp.PRESETS["qwen3-vl"]
# clip -> (frames, height, width, photo panned across); 64 x 1080 x 1920 x 3 uint8 is 398 MB, built once
CLIPS = {"16x720p": (16, 720, 1280, "astronaut"), "64x1080p": (64, 1080, 1920, "coffee")}
PAN_STEP = 8  # pixels the view moves per frame
VIDEO_ROUNDS = {"16x720p": 5, "64x1080p": 3}
VIDEO_PROVIDERS = ["ours", "ours-pil", "ours-qwen3vl", "hf-qwen2vl", "hf-qwen3vl"]
# each of our torch-uint8 providers against the transformers video processor with the same resize and sizing
VIDEO_COUNTERPART = {"ours": "hf-qwen2vl", "ours-qwen3vl": "hf-qwen3vl"}


@functools.lru_cache(maxsize=None)
def video_clip(clip: str = "16x720p") -> torch.Tensor:
    """``[T, 3, H, W] uint8``: T frames panning across a photo (real content, not noise), the view moving
    ``PAN_STEP`` pixels to the right per frame."""
    t, h, w, name = CLIPS[clip]
    src = torch.from_numpy(np.array(photo(name, h, w + PAN_STEP * (t - 1)))).permute(2, 0, 1)
    return torch.stack([src[:, :, PAN_STEP * i:PAN_STEP * i + w] for i in range(t)]).contiguous()


def video_config(provider: str, clip: str) -> tuple[qvp.VisionPreprocessConfig, qvp.VideoConfig]:
    """The image and video config of one of our providers. ``ours`` keeps the video preset's own mode
    (torch-uint8); ``ours-qwen3vl`` gets the qwen2 family's per-frame budget times the clip's frame count,
    since Qwen3-VL's bounds count all frames of a clip."""
    if provider == "ours-qwen3vl":
        frames = CLIPS[clip][0]
        return QWEN3_CONFIG, qvp.VideoConfig.from_preset("qwen3-vl", max_pixels=frames * VIDEO_MAX_PIXELS)
    changes = dict(resize_mode="pil") if provider == "ours-pil" else {}
    return CONFIG, qvp.VideoConfig.from_preset("qwen2-vl", max_pixels=VIDEO_MAX_PIXELS, **changes)


@functools.lru_cache(maxsize=None)
def hf_video_processor(provider: str, clip: str):
    if provider == "hf-qwen3vl":
        from transformers import Qwen3VLVideoProcessor

        vc = video_config("ours-qwen3vl", clip)[1]
        return Qwen3VLVideoProcessor(size={"shortest_edge": vc.min_pixels, "longest_edge": vc.max_pixels},
                                     max_video_tokens=vc.max_video_tokens, cap_pixels_per_frame=False)
    from transformers import Qwen2VLVideoProcessor

    return Qwen2VLVideoProcessor(min_pixels=CONFIG.min_pixels, max_pixels=VIDEO_MAX_PIXELS,
                                 cap_pixels_per_frame=False)


def video_provider_fn(provider: str, clip: str):
    """A no-argument call that preprocesses the clip's frames as they are (no frame sampling on either side)."""
    frames = video_clip(clip)
    if provider.startswith("ours"):
        config, vc = video_config(provider, clip)
        return lambda: qvp.preprocess_videos(frames, config, vc)
    proc = hf_video_processor(provider, clip)
    return lambda: proc(videos=[frames], return_tensors="pt", do_sample_frames=False)


def video_outputs(provider: str, out) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pixel_values_videos, video_grid_thw)`` of any provider's output."""
    return out if provider.startswith("ours") else (out["pixel_values_videos"], out["video_grid_thw"])


@functools.lru_cache(maxsize=None)
def hf_video_grid(provider: str, clip: str) -> torch.Tensor:
    return video_outputs(provider, video_provider_fn(provider, clip)())[1]


def reference_spans(frames: int, most: int = 16, edge: int = 4) -> list[tuple[int, int]]:
    """The frame ranges ``ours-pil`` is compared on with the reference backend (slow: about 1 s per 1080p
    frame on 2 cores): the whole clip up to ``most`` frames, else its first and last ``edge`` frames. Qwen2-VL
    sizes each frame on its own, so a part of the clip gets the same frame size and the same rows."""
    return [(0, frames)] if frames <= most else [(0, edge), (frames - edge, frames)]


@functools.lru_cache(maxsize=None)
def check_video(clip: str, provider: str) -> None:
    """Once per clip and provider: ``ours`` / ``ours-qwen3vl`` == their HF video processor (grid exactly, pixels
    to 1e-5); ``ours-pil`` == our reference backend bit for bit (on :func:`reference_spans`), with HF
    Qwen2-VL's grid."""
    pixels, grid = video_outputs(provider, video_provider_fn(provider, clip)())
    if provider == "ours-pil":
        assert torch.equal(grid, hf_video_grid("hf-qwen2vl", clip))
        config, vc = video_config(provider, clip)
        frames, tp = video_clip(clip), config.temporal_patch_size
        rows = int(grid[0, 1] * grid[0, 2])  # per temporal patch
        for start, stop in reference_spans(len(frames)):
            ref_pixels, ref_grid = qvp.preprocess_videos(frames[start:stop], config, vc, backend="reference")
            assert torch.equal(ref_grid[0, 1:], grid[0, 1:])
            assert torch.equal(pixels[start // tp * rows:stop // tp * rows], ref_pixels)
        return
    ref = video_provider_fn(VIDEO_COUNTERPART[provider], clip)()
    assert torch.equal(grid, ref["video_grid_thw"])
    assert (pixels - ref["pixel_values_videos"]).abs().max().item() <= 1e-5


def video_extra_info(provider: str, clip: str) -> dict:
    frames, height, width, _ = CLIPS[clip]
    return dict(provider=provider, frames=frames, height=height, width=width, max_pixels_per_frame=VIDEO_MAX_PIXELS,
                torch_threads=torch.get_num_threads(), torch=torch.__version__, torchvision=torchvision.__version__,
                pillow=PIL.__version__, transformers=transformers.__version__, qwen_vis_prep=qvp.__version__)


@pytest.mark.parametrize("clip", list(CLIPS))
@pytest.mark.parametrize("provider", VIDEO_PROVIDERS)
def test_cpu_video_clip(benchmark, provider, clip):
    """One clip of ``[T, 3, H, W]`` uint8 frames, already decoded. Our providers are checked first
    (:func:`check_video`); every provider's grid must equal its transformers processor's."""
    if provider.startswith("ours"):
        check_video(clip, provider)
    run = video_provider_fn(provider, clip)
    benchmark.group = f"video-{clip}"
    benchmark.extra_info.update(video_extra_info(provider, clip),
                                input="[T, 3, H, W] uint8 tensor (a pan across a skimage photo)")
    out = benchmark.pedantic(run, rounds=VIDEO_ROUNDS[clip], warmup_rounds=1, iterations=1)
    hf = "hf-qwen3vl" if provider in ("ours-qwen3vl", "hf-qwen3vl") else "hf-qwen2vl"
    assert torch.equal(video_outputs(provider, out)[1], hf_video_grid(hf, clip))


# ------------------------------------------------------------------------------------- video file -> patches
def encode_clip(frames: torch.Tensor, path, fps: int = 24) -> str:
    """Write ``[T, 3, H, W] uint8`` frames to an mp4 (H.264 ``ultrafast`` at CRF 18 where libx264 is built in,
    else MPEG-4 part 2 at about 0.2 bits per pixel), yuv420p, ``fps`` frames per second."""
    import av

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    _, _, height, width = frames.shape
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "ultrafast"}
        else:
            stream.bit_rate = int(0.2 * height * width * fps)
        for frame in frames:
            image = av.VideoFrame.from_ndarray(frame.permute(1, 2, 0).contiguous().numpy(), format="rgb24")
            container.mux(stream.encode(image.reformat(format="yuv420p")))
        container.mux(stream.encode())
    return str(path)


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    """``clip_file(clip)``: the path of the clip encoded to mp4, written once per module and clip."""
    paths: dict[str, str] = {}

    def get(clip: str) -> str:
        if clip not in paths:
            paths[clip] = encode_clip(video_clip(clip), tmp_path_factory.mktemp("clips") / f"{clip}.mp4")
        return paths[clip]

    return get


def file_provider_fn(provider: str, clip: str, path: str):
    """Decode every frame of the file, then preprocess them as ``ours`` / ``hf-qwen2vl`` do."""
    frames = CLIPS[clip][0]
    if provider == "ours-file":
        config, vc = video_config("ours", clip)
        return lambda: qvp.preprocess_videos(qvp.load_video(path, num_frames=frames).frames, config, vc)
    from transformers.video_utils import load_video

    proc = hf_video_processor("hf-qwen2vl", clip)

    def run():
        video, _ = load_video(path, backend="pyav", num_frames=frames)
        return proc(videos=[video], return_tensors="pt", do_sample_frames=False)

    return run


@functools.lru_cache(maxsize=None)
def check_file(clip: str, path: str) -> str:
    """Once per clip: both sides decode all frames, in order, and give the same grid. Where ours decodes with
    PyAV too, the frames are the same and so are the pixels (to 1e-5). Returns our decoder's name."""
    from transformers.video_utils import load_video

    frames = CLIPS[clip][0]
    ours = qvp.load_video(path, num_frames=frames)
    hf_frames, _ = load_video(path, backend="pyav", num_frames=frames)
    assert ours.metadata.indices == list(range(frames)) and len(hf_frames) == frames
    pixels, grid = file_provider_fn("ours-file", clip, path)()
    ref = file_provider_fn("hf-file", clip, path)()
    assert torch.equal(grid, ref["video_grid_thw"])
    if ours.metadata.decoder == "pyav":
        assert torch.equal(ours.frames, torch.from_numpy(hf_frames).permute(0, 3, 1, 2))
        assert (pixels - ref["pixel_values_videos"]).abs().max().item() <= 1e-5
    return ours.metadata.decoder


@pytest.mark.parametrize("clip", list(CLIPS))
@pytest.mark.parametrize("provider", ["ours-file", "hf-file"])
def test_cpu_video_file(benchmark, clip_file, provider, clip):
    """File to patches: decode every frame of the clip's mp4 (ours: ``qvp.load_video``, HF:
    ``transformers.video_utils.load_video(backend="pyav")``), then ``ours`` / ``hf-qwen2vl`` on those frames."""
    import av

    path = clip_file(clip)
    ours_decoder = check_file(clip, path)
    decoder = ours_decoder if provider == "ours-file" else "pyav"
    with av.open(path) as container:
        codec = container.streams.video[0].codec_context.name
    benchmark.group = f"file-{clip}"
    benchmark.extra_info.update(video_extra_info(provider, clip), av=av.__version__, codec=codec, decoder=decoder,
                                file_bytes=os.path.getsize(path), input="mp4 path (yuv420p, 24 fps)")
    out = benchmark.pedantic(file_provider_fn(provider, clip, path), rounds=VIDEO_ROUNDS[clip], warmup_rounds=1,
                             iterations=1)
    assert torch.equal(video_outputs(provider, out)[1], hf_video_grid("hf-qwen2vl", clip))


# ------------------------------------------------------------------------------------- the other families
FAMILY_CLASS = {"qwen3.5": "Qwen2VLImageProcessor", "qwen2.5-omni": "Qwen2VLImageProcessor",
                "qwen3-omni": "Qwen2VLImageProcessor", "dots3-note": "Qwen2VLImageProcessor",
                "glm-4.1v": "Glm4vImageProcessor", "glm-4.6v": "Glm46VImageProcessor",
                "paddleocr-vl": "PaddleOCRVLImageProcessor", "ernie-4.5-vl": "Ernie4_5_VLMoeImageProcessor"}


@functools.lru_cache(maxsize=None)
def family_processor(preset: str, provider: str):
    """The family's transformers image processor with the preset's values."""
    from qwen_vis_prep.pretrained import to_hf_dict

    keys = to_hf_dict(qvp.PRESETS[preset])
    keys.pop("image_processor_type")
    suffix = "Pil" if provider == "hf-pil" else ""
    return getattr(transformers, FAMILY_CLASS[preset] + suffix)(**keys)


def family_fn(preset: str, provider: str):
    images = case_images("1x1080p")
    if provider == "ours":
        return lambda: qvp.preprocess(images, preset)
    proc = family_processor(preset, provider)
    return lambda: proc(images, return_tensors="pt")


@functools.lru_cache(maxsize=None)
def check_family(preset: str) -> None:
    ours = family_fn(preset, "ours")()
    ref = family_fn(preset, "hf-pil")()
    assert torch.equal(ours.grid_thw, ref["image_grid_thw"])
    pv = ref["pixel_values"].reshape(ours.pixel_values.shape)
    assert (ours.pixel_values - pv).abs().max().item() <= 1e-5


@pytest.mark.parametrize("provider", ["ours", "hf-pil", "hf-torchvision"])
@pytest.mark.parametrize("preset", list(FAMILY_CLASS))
def test_cpu_family(benchmark, preset, provider):
    check_family(preset)
    benchmark.group = f"family-{preset}"
    benchmark.extra_info.update(
        provider=provider, preset=preset, torch_threads=torch.get_num_threads(), torch=torch.__version__,
        pillow=PIL.__version__, transformers=transformers.__version__, qwen_vis_prep=qvp.__version__,
        input="one 1080x1920 HWC uint8 numpy array (skimage astronaut resized with Pillow BICUBIC)")
    out = benchmark.pedantic(family_fn(preset, provider), rounds=5, warmup_rounds=1, iterations=1)
    grid = out.grid_thw if provider == "ours" else out["image_grid_thw"]
    assert grid.shape == (1, 3)
