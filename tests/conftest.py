"""Shared fixtures: real images from scikit-image, Hugging Face reference processors, CUDA skipping,
hypothesis profiles.

Every expected value in this suite comes from an independent implementation (Pillow, transformers,
torchvision, torch), never from our own earlier output.
"""

from __future__ import annotations

import functools
import os

import torch as _torch

# Without a GPU the Triton kernels run in Triton's CPU interpreter, so their exact arithmetic is tested on
# every CI run. This must happen before anything imports the kernels.
if not _torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np
import pytest
import torch

import qwen_vis_prep as qvp

# --------------------------------------------------------------------------------------------------------
# CUDA
# --------------------------------------------------------------------------------------------------------

HAS_CUDA = torch.cuda.is_available()

requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")


def pytest_collection_modifyitems(config, items):
    # Tests marked ``@pytest.mark.cuda`` (declared in pyproject.toml) are skipped without a CUDA device, so
    # test files need not import anything from this conftest.
    for item in items:
        if "cuda" in item.keywords and not HAS_CUDA:
            item.add_marker(requires_cuda)


# --------------------------------------------------------------------------------------------------------
# hypothesis profiles: quick by default, HYPOTHESIS_PROFILE=long for a soak run
# --------------------------------------------------------------------------------------------------------

try:
    from hypothesis import HealthCheck, settings

    _health = [HealthCheck.too_slow, HealthCheck.data_too_large]
    settings.register_profile("quick", max_examples=25, deadline=None, suppress_health_check=_health)
    settings.register_profile("long", max_examples=2000, deadline=None, suppress_health_check=_health)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))
except ImportError:  # pragma: no cover - hypothesis is a test extra
    pass


# --------------------------------------------------------------------------------------------------------
# real images (bundled with scikit-image, never downloaded)
# --------------------------------------------------------------------------------------------------------

#: RGB images bundled with scikit-image: name -> shape (H, W, 3).
RGB_NAMES = ("astronaut", "chelsea", "coffee", "rocket")
#: 2-D grayscale images bundled with scikit-image.
GRAY_NAMES = ("camera", "moon", "page", "text")


@functools.lru_cache(maxsize=None)
def _skimage(name: str) -> np.ndarray:
    from skimage import data

    arr = np.ascontiguousarray(getattr(data, name)())
    assert arr.dtype == np.uint8, (name, arr.dtype)
    arr.setflags(write=False)  # shared between tests: nobody may modify it
    return arr


def load_hwc(name: str) -> np.ndarray:
    """``[H, W, 3] uint8`` of a bundled scikit-image picture (gray ones replicated to 3 channels)."""
    arr = _skimage(name)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return arr


@pytest.fixture(scope="session")
def load_image():
    """``load_image(name) -> [H, W, 3] uint8`` (read-only) of any bundled scikit-image picture."""
    return load_hwc


@pytest.fixture(scope="session")
def rgb_hwc() -> dict[str, np.ndarray]:
    """``name -> [H, W, 3] uint8`` numpy arrays (read-only) of the RGB scikit-image pictures."""
    return {name: _skimage(name) for name in RGB_NAMES}


@pytest.fixture(scope="session")
def rgb_chw() -> dict[str, torch.Tensor]:
    """``name -> [3, H, W] uint8`` contiguous tensors of the RGB scikit-image pictures (fresh copies)."""
    return {name: torch.from_numpy(_skimage(name).copy()).permute(2, 0, 1).contiguous() for name in RGB_NAMES}


@pytest.fixture(scope="session")
def gray_hw() -> dict[str, np.ndarray]:
    """``name -> [H, W] uint8`` of the grayscale scikit-image pictures (``camera`` ...)."""
    return {name: _skimage(name) for name in GRAY_NAMES}


@pytest.fixture(scope="session")
def rgba_hwc() -> np.ndarray:
    """``[512, 512, 4] uint8``: ``astronaut`` with ``camera`` as its alpha channel (every alpha level occurs;
    scikit-image's own RGBA ``logo`` is fully opaque, so it would test nothing)."""
    rgba = np.concatenate([_skimage("astronaut"), _skimage("camera")[:, :, None]], axis=2)
    assert rgba.shape == (512, 512, 4)
    rgba.setflags(write=False)
    return rgba


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy generator (a fresh one per test, so tests do not depend on each other's order)."""
    return np.random.default_rng(20240607)


# --------------------------------------------------------------------------------------------------------
# Hugging Face reference processors
# --------------------------------------------------------------------------------------------------------

def hf_kwargs(config: qvp.VisionPreprocessConfig) -> dict:
    """The transformers constructor arguments that mean the same as ``config`` (the pixel budget as
    ``size``, which every family's class reads)."""
    return dict(size={"shortest_edge": config.min_pixels, "longest_edge": config.max_pixels},
                patch_size=config.patch_size, temporal_patch_size=config.temporal_patch_size,
                merge_size=config.merge_size, image_mean=list(config.image_mean), image_std=list(config.image_std),
                rescale_factor=config.rescale_factor, do_resize=config.do_resize, do_rescale=config.do_rescale,
                do_normalize=config.do_normalize, do_convert_rgb=config.do_convert_rgb)


def hf_image_processor_class(config: qvp.VisionPreprocessConfig, pil: bool):
    """The transformers image processor class of ``config``'s family (``Qwen2VLImageProcessor``,
    ``Glm4vImageProcessor``, ``PaddleOCRVLImageProcessor``), its PIL backend (``...Pil``) or torchvision."""
    transformers = pytest.importorskip("transformers")
    from qwen_vis_prep.pretrained import hf_class_name

    return getattr(transformers, hf_class_name(config) + ("Pil" if pil else ""))


def hf_target_size(height: int, width: int, config: qvp.VisionPreprocessConfig) -> tuple[int, int]:
    """The resized size transformers' own sizing function of ``config``'s family gives."""
    f, lo, hi = config.factor, config.min_pixels, config.max_pixels
    if config.sizing == "glm4v":
        from transformers.models.glm4v.image_processing_glm4v import smart_resize

        t = config.temporal_patch_size
        return tuple(smart_resize(t, height, width, temporal_factor=t, factor=f, min_pixels=lo, max_pixels=hi))
    if config.sizing == "paddleocr-vl":
        from transformers.models.paddleocr_vl.image_processing_paddleocr_vl import smart_resize

        return tuple(smart_resize(height, width, factor=f, min_pixels=lo, max_pixels=hi))
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    return tuple(smart_resize(height, width, factor=f, min_pixels=lo, max_pixels=hi))


@pytest.fixture(scope="session")
def hf_pil():
    """Factory ``hf_pil(config)``: transformers' PIL/NumPy-backend image processor of ``config``'s family
    (``Qwen2VLImageProcessorPil`` for the Qwen presets)."""
    def make(config: qvp.VisionPreprocessConfig):
        return hf_image_processor_class(config, pil=True)(**hf_kwargs(config))

    return make


@pytest.fixture(scope="session")
def hf_tv():
    """Factory ``hf_tv(config)``: transformers' torchvision-backend image processor of ``config``'s family."""
    def make(config: qvp.VisionPreprocessConfig):
        return hf_image_processor_class(config, pil=False)(**hf_kwargs(config))

    return make


@pytest.fixture
def torchvision_float_resize(monkeypatch):
    """Make torchvision resize uint8 images the way it does on GPU and on non-AVX CPUs.

    On AVX2/AVX512 CPUs ``torchvision.transforms.v2.functional.resize`` hands uint8 BICUBIC images to
    torch's native uint8 kernel, a fixed-point port of Pillow-SIMD (with uint8 clipping between the passes).
    Everywhere else it resizes in float32 and then clamps and rounds to uint8 -- the algorithm of
    ``resize_mode="float"``. This fixture selects the latter on every machine.
    """
    from torchvision.transforms.v2.functional import _geometry

    assert hasattr(_geometry, "_do_native_uint8_resize_on_cpu"), "torchvision internals changed"
    monkeypatch.setattr(_geometry, "_do_native_uint8_resize_on_cpu", lambda interpolation: False)


# --------------------------------------------------------------------------------------------------------
# the invariants every backend keeps (in the manner of torchvision's check_kernel)
# --------------------------------------------------------------------------------------------------------

def _storage_overlaps(a: torch.Tensor, b: torch.Tensor) -> bool:
    sa, sb = a.untyped_storage(), b.untyped_storage()
    a0, b0 = sa.data_ptr(), sb.data_ptr()
    return a.device == b.device and a0 < b0 + sb.nbytes() and b0 < a0 + sa.nbytes()


def _items(images):
    """The images of an input one by one (a list's items, a batch's slices), or None for a single image."""
    if isinstance(images, (list, tuple)):
        return list(images)
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        return list(images.unbind(0))
    return None


def check_backend(backend: str, images, config=None, **kwargs) -> qvp.VisionBatch:
    """Run ``qvp.preprocess(images, config, backend=backend)`` and check what every backend promises:

    * the input is not modified (same ``_version``, same values) and the output shares no memory with it;
    * ``pixel_values`` has the config's dtype, lies on the input's device, and has the documented shape;
      ``grid_thw`` is int64 on the CPU;
    * the same bits as the reference backend on the same device (the oracle);
    * a batch or list gives the same bits as its images one by one;
    * on CUDA, the same bits as the reference on the CPU.
    Returns the output."""
    config = qvp.PRESETS["qwen2-vl"] if config is None else config
    tensors = [images] if isinstance(images, torch.Tensor) else [t for t in images if isinstance(t, torch.Tensor)]
    versions = [t._version for t in tensors]
    copies = [t.clone() for t in tensors]
    out = qvp.preprocess(images, config, backend=backend, **kwargs)
    assert [t._version for t in tensors] == versions, "the input was modified in place"
    assert all(torch.equal(t, c) for t, c in zip(tensors, copies)), "the input's values changed"
    for t in tensors:
        assert not _storage_overlaps(out.pixel_values, t) and not _storage_overlaps(out.grid_thw, t)
    pv = out.pixel_values
    assert pv.dtype == config.output_dtype and pv.device == tensors[0].device
    assert out.grid_thw.dtype == torch.int64 and out.grid_thw.device.type == "cpu"
    assert pv.shape == (int(out.grid_thw.prod(1).sum()), config.patch_dim)
    reference = qvp.preprocess(images, config, backend="reference", **kwargs).pixel_values
    assert torch.equal(pv, reference), f"backend={backend!r} differs from the reference"
    items = _items(images)
    if items is not None and len(items) > 1:
        one_by_one = torch.cat([qvp.preprocess(x, config, backend=backend, **kwargs).pixel_values for x in items])
        assert torch.equal(pv, one_by_one), "a batch differs from its images one by one"
    if pv.is_cuda:
        host = [t.cpu() for t in images] if isinstance(images, (list, tuple)) else images.cpu()
        assert torch.equal(pv.cpu(), qvp.preprocess(host, config, backend="reference", **kwargs).pixel_values)
    return out
