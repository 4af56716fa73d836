"""Determinism, concurrency, bounded caches and bounded memory (issue #6).

Bit-exact stages are compared with ``torch.equal``. The memory bounds are derived in the test docstrings and
the figures measured once are recorded in docs/reliability.md (``benchmarks/memory_bounds.py`` prints them).
"""

from __future__ import annotations

import importlib.util
import pathlib
import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

import qwen_vis_prep as qvp
from qwen_vis_prep import resample_tables
from qwen_vis_prep.resample_tables import DEVICE_TABLES

from test_errors import DEVICE_BACKENDS, HAS_CUDA, NEEDS_CUDA, _u8, triton_runs  # noqa: F401

SMALL = qvp.VisionPreprocessConfig.from_preset("qwen2-vl", max_pixels=28 * 28 * 200)


def _images(device="cpu", small=False):
    """Ragged images that take every path: down/up-scaling, one side kept, no resize, gray, RGBA, float.

    ``small``: fewer, smaller ones for Triton's CPU interpreter (TRITON_INTERPRET=1, which conftest.py sets
    without a GPU), where one launch on a 300 x 200 image takes seconds."""
    if small:
        return [_u8(3, 23, 61, seed=1, device=device), _u8(3, 28, 56, seed=4, device=device),
                _u8(1, 20, 36, seed=5, device=device), _u8(4, 30, 21, seed=6, device=device),
                (_u8(3, 33, 47, seed=7, device=device).float() * 0.99 + 0.25)]
    return [_u8(3, 45, 61, seed=1, device=device), _u8(3, 300, 200, seed=2, device=device),
            _u8(3, 17, 900, seed=3, device=device), _u8(3, 56, 84, seed=4, device=device),
            _u8(1, 90, 120, seed=5, device=device), _u8(4, 70, 33, seed=6, device=device),
            (_u8(3, 120, 77, seed=7, device=device).float() * 0.99 + 0.25)]


def _case(device: str, backend: str) -> tuple[qvp.VisionPreprocessConfig, list[torch.Tensor]]:
    """Config and images for a (device, backend) pair: small ones under the interpreter."""
    if (device, backend) == ("cpu", "triton"):
        return SMALL.replace(min_pixels=28 * 28, max_pixels=28 * 28 * 4), _images(device, small=True)
    return SMALL, _images(device)


def _memory_bounds():
    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "memory_bounds.py"
    spec = importlib.util.spec_from_file_location("memory_bounds", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------------------------------------- determinism
# Triton's CPU interpreter repeats each composition slowly (~7 s a mode): in the slow run; CUDA runs it always.
DETERMINISM_BACKENDS = [pytest.param(*p.values, id=p.id, marks=[*p.marks, pytest.mark.slow]) if p.id == "cpu-triton"
                        else p for p in DEVICE_BACKENDS]


@pytest.mark.parametrize("mode", ["pil", "float"])
@pytest.mark.parametrize("device,backend", DETERMINISM_BACKENDS)
def test_same_input_same_bits_across_calls_and_batch_compositions(device, backend, mode):
    cfg, images = _case(device, backend)
    cfg = cfg.replace(resize_mode=mode)
    alone = [qvp.preprocess(img, cfg, backend=backend).pixel_values for img in images]
    again = [qvp.preprocess(img, cfg, backend=backend).pixel_values for img in images]
    ragged = qvp.preprocess(images, cfg, backend=backend)
    reversed_ = qvp.preprocess(images[::-1], cfg, backend=backend)
    rows = [int(t * h * w) for t, h, w in ragged.grid_thw.tolist()]
    backwards = reversed(reversed_.pixel_values.split(rows[::-1]))
    for a, b, c, d in zip(alone, again, ragged.pixel_values.split(rows), backwards):
        assert torch.equal(a, b) and torch.equal(a, c) and torch.equal(a, d)
    # a same-shape batch tensor, its list, and each image alone
    side = (23, 31) if (device, backend) == ("cpu", "triton") else (45, 61)
    batch = torch.stack([_u8(3, *side, seed=s, device=device) for s in range(2 if backend == "triton" else 3)])
    stacked = qvp.preprocess(batch, cfg, backend=backend).pixel_values
    listed = qvp.preprocess(list(batch.unbind(0)), cfg, backend=backend).pixel_values
    single = torch.cat([qvp.preprocess(b, cfg, backend=backend).pixel_values for b in batch.unbind(0)])
    assert torch.equal(stacked, listed) and torch.equal(stacked, single)


def _pil_mode_outputs(device, backend, case):
    cfg, images = case
    images = [img.to(device) for img in images]
    return qvp.preprocess(images, cfg, backend=backend).pixel_values.cpu()


@pytest.mark.parametrize("device,backend", [
    pytest.param("cpu", "reference", id="cpu-reference"),  # the pure-torch port of Pillow's resampler
    pytest.param("cpu", "native", id="cpu-native"),  # the compiled resampler (the CPU default)
    pytest.param("cpu", "triton", id="cpu-triton", marks=pytest.mark.skipif(
        not triton_runs("cpu"), reason="Triton does not run on the CPU here (TRITON_INTERPRET=1 to try)")),
    pytest.param("cuda", "reference", id="cuda-reference", marks=NEEDS_CUDA),
    pytest.param("cuda", "triton", id="cuda-triton", marks=[*NEEDS_CUDA, pytest.mark.skipif(
        not triton_runs("cuda"), reason="the Triton backend cannot run here")]),
])
def test_backends_agree_bit_for_bit_in_pil_mode(device, backend):
    """Every backend equals the Pillow backend (Pillow's own resampler) exactly."""
    case = _case("cpu", backend)
    expected = _pil_mode_outputs("cpu", "pillow", case)
    assert torch.equal(_pil_mode_outputs(device, backend, case), expected)


# ---------------------------------------------------------------------------------------------- concurrency
def test_eight_threads_give_the_sequential_results():
    prep = qvp.QwenVisionPreprocessor(config=SMALL)
    imgs = _images()
    jobs = [imgs[i % len(imgs)] for i in range(8)] + [imgs, imgs[:3], torch.stack([imgs[0], imgs[0]]),
                                                      imgs[::-1], imgs[2], imgs[4:], imgs[0], imgs]
    expected = [prep(job).pixel_values for job in jobs]
    barrier = threading.Barrier(8)

    def run(worker: int) -> list[tuple[int, torch.Tensor]]:
        barrier.wait()  # all eight start together
        return [(j, prep(jobs[j]).pixel_values) for j in range(worker, len(jobs), 8)]

    for _ in range(2):
        with ThreadPoolExecutor(8) as pool:
            results = [r for part in pool.map(run, range(8)) for r in part]
        assert sorted(j for j, _ in results) == list(range(len(jobs)))
        for j, got in results:
            assert torch.equal(got, expected[j]), f"job {j} differs under 8 threads"


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_two_cuda_streams_do_not_interfere(backend):
    """Two streams, cold table cache, and the first stream held back by a sleep kernel: whatever the first
    call puts in the shared device cache (taps, level table) must be usable by the second stream at once."""
    x1 = _u8(2, 3, 333, 517, seed=1, device="cuda")
    x2 = [_u8(3, 333, 517, seed=2, device="cuda"), _u8(3, 517, 333, seed=3, device="cuda")]
    ref1 = qvp.preprocess(x1.cpu(), SMALL).pixel_values
    ref2 = qvp.preprocess([x.cpu() for x in x2], SMALL).pixel_values
    torch.cuda.synchronize()
    s1, s2 = torch.cuda.Stream(), torch.cuda.Stream()
    for _ in range(3):
        DEVICE_TABLES.clear()  # the first stream builds the tables, the second finds them in the cache
        triton_plans().clear()
        triton_warm_calls().clear()
        with torch.cuda.stream(s1):
            torch.cuda._sleep(50_000_000)  # ~tens of ms: s1's work (and its table uploads) land late
            o1 = qvp.preprocess(x1, SMALL, backend=backend).pixel_values
        with torch.cuda.stream(s2):
            o2 = qvp.preprocess(x2, SMALL, backend=backend).pixel_values
        torch.cuda.synchronize()
        assert torch.equal(o1.cpu(), ref1)
        assert torch.equal(o2.cpu(), ref2)


# ---------------------------------------------------------------------------------------------- caches
def triton_plans() -> resample_tables.DeviceTableCache:
    """The Triton backend's cache of launch plans (one per shape, strides, alignment, config, rows)."""
    from qwen_vis_prep.backends.triton import plans

    return plans.PLANS


def triton_warm_calls() -> resample_tables.DeviceTableCache:
    """The Triton backend's own LRU of recorded warm calls (each keeps its plans alive)."""
    from qwen_vis_prep.backends.triton import warm

    return warm.WARM_CALLS


@pytest.mark.skipif(not triton_runs("cuda" if HAS_CUDA else "cpu"), reason="Triton cannot run here")
def test_triton_launch_plans_stay_bounded(monkeypatch):
    """Plans and warm calls are LRUs like the tables: over more distinct sizes than they hold, they stay at
    their bound and an evicted plan or call is rebuilt with the same result."""
    from qwen_vis_prep.backends.triton import plans, warm

    device = "cuda" if HAS_CUDA else "cpu"
    monkeypatch.setattr(plans, "PLANS", resample_tables.DeviceTableCache(maxsize=6))
    monkeypatch.setattr(warm, "WARM_CALLS", resample_tables.DeviceTableCache(maxsize=4))
    cfg = SMALL.replace(min_pixels=28 * 28, max_pixels=28 * 28 * 4)
    first = _u8(3, 20, 29, device=device, seed=1)
    early = qvp.preprocess(first, cfg, backend="triton").pixel_values
    for i in range(10):
        qvp.preprocess(_u8(3, 21 + i, 30 + 2 * i, device=device, seed=i), cfg, backend="triton")
        assert len(plans.PLANS) <= 6 and len(warm.WARM_CALLS) <= 4
    assert len(plans.PLANS) == 6 and len(warm.WARM_CALLS) == 4
    again = qvp.preprocess(first, cfg, backend="triton").pixel_values
    assert torch.equal(again, early)
    assert torch.equal(again, qvp.preprocess(first.cpu(), cfg, backend="reference").pixel_values.to(device))


def _cache_sizes() -> dict[str, int]:
    sizes = {name: getattr(resample_tables, name).cache_info().currsize
             for name in ("filter_weights", "pil_taps", "float_taps")}
    sizes["DEVICE_TABLES"] = len(DEVICE_TABLES)
    sizes["PLANS"] = len(triton_plans())
    sizes["WARM_CALLS"] = len(triton_warm_calls())
    return sizes


def _thousand_sizes() -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """1000 distinct (input size, output size) pairs, about 2000 distinct one-axis tables."""
    rng = np.random.default_rng(6)
    seen, pairs = set(), []
    while len(pairs) < 1000:
        ih, iw, oh, ow = (int(v) for v in rng.integers(2, 96, 4))
        if (ih, iw, oh, ow) not in seen:
            seen.add((ih, iw, oh, ow))
            pairs.append(((ih, iw), (oh, ow)))
    return pairs


def test_caches_stay_bounded_over_a_thousand_sizes():
    limits = {name: getattr(resample_tables, name).cache_info().maxsize
              for name in ("filter_weights", "pil_taps", "float_taps")}
    limits["DEVICE_TABLES"] = DEVICE_TABLES.maxsize
    limits["PLANS"] = triton_plans().maxsize
    limits["WARM_CALLS"] = triton_warm_calls().maxsize
    pairs = _thousand_sizes()
    first_in, first_out = pairs[0]
    x0 = _u8(3, *first_in, seed=99)
    early = {mode: qvp.resize(x0, first_out, mode, backend="reference") for mode in ("pil", "float")}
    tracemalloc.start()
    try:
        for i, (ins, outs) in enumerate(pairs):
            x = _u8(3, *ins, seed=i)
            qvp.resize(x, outs, "pil" if i % 2 else "float", backend="reference")
            if i % 100 == 0:  # the full pipeline too: its tables and constants share the same caches
                qvp.preprocess(x, SMALL.replace(resize_mode="float", min_pixels=784))
            if i == 600:  # by now every cache is full
                half, _ = tracemalloc.get_traced_memory()
            sizes = _cache_sizes()
            assert all(sizes[k] <= limits[k] for k in limits), (i, sizes, limits)
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert _cache_sizes()["filter_weights"] == limits["filter_weights"]  # the LRU did fill up and evict
    assert end - half < 4 << 20, f"host memory grew by {(end - half) / 2**20:.1f} MiB over 400 more sizes"
    # evicted tables are rebuilt identically
    for mode in ("pil", "float"):
        assert torch.equal(qvp.resize(x0, first_out, mode, backend="reference"), early[mode])


def test_config_registry_stays_bounded_over_a_thousand_configs():
    """Regression: the config registry behind the torch.compile custom op kept every config ever built."""
    from qwen_vis_prep import config as config_module

    registry = getattr(config_module, "_BY_KEY", {})
    for i in range(2000):
        qvp.VisionPreprocessConfig(max_pixels=3136 * (i + 1))
    assert len(registry) <= 1024


def _compiled_kernels() -> int | None:
    """Kernels Triton compiled for this package so far (None where its cache cannot be read)."""
    try:
        from qwen_vis_prep.backends.triton import kernels
    except Exception:
        return None
    total = 0
    for fn in vars(kernels).values():
        caches = getattr(fn, "device_caches", None)
        if caches is None:
            continue
        try:
            total += sum(len(entry[0]) for entry in caches.values())
        except Exception:
            return None
    return total


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["reference", pytest.param("triton", marks=pytest.mark.skipif(
    not triton_runs("cuda"), reason="the Triton backend cannot run here"))])
def test_device_caches_stay_bounded_over_a_thousand_sizes_on_cuda(backend):
    """Tables on the GPU are bounded by DEVICE_TABLES's LRU; Triton specialises kernels on constexprs and on
    the divisibility of integer arguments, never on their values, and our kernels opt their extents out of
    the latter, so its compiled cache stays small too."""
    pairs = _thousand_sizes()
    cfg = SMALL.replace(min_pixels=784)
    for i, (ins, outs) in enumerate(pairs[:200]):  # warm both entry points timed below
        qvp.preprocess(_u8(3, *ins, seed=i, device="cuda"), cfg, backend=backend)
        qvp.resize(_u8(3, *ins, seed=i, device="cuda"), outs, backend=backend)
    torch.cuda.synchronize()
    warm_bytes, warm_kernels = torch.cuda.memory_allocated(), _compiled_kernels()
    for i, (ins, outs) in enumerate(pairs[200:]):
        qvp.preprocess(_u8(3, *ins, seed=i, device="cuda"), cfg, backend=backend)
        qvp.resize(_u8(3, *ins, seed=i, device="cuda"), outs, backend=backend)
        assert len(DEVICE_TABLES) <= DEVICE_TABLES.maxsize
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() - warm_bytes < 16 << 20
    if backend == "triton" and warm_kernels is not None:
        # a cache keyed on sizes would compile once per size and entry point (1600 more here). What may still
        # compile: tap counts first met here (the largest downscales) and stride patterns (divisibility by 16
        # of row and plane strides); extents are not specialised on divisibility (kernels._jit_sizes)
        assert _compiled_kernels() - warm_kernels < 100, (warm_kernels, _compiled_kernels())


# ---------------------------------------------------------------------------------------------- memory
#: Worst-case ``pixel_values`` of one image per preset in float32 (docs/reliability.md):
#: ``max_pixels / patch_size**2`` rows of ``3 * temporal_patch_size * patch_size**2`` columns.
WORST_CASE_FLOAT32_BYTES = {"qwen2-vl": 308_281_344, "qwen2.5-vl": 308_281_344, "qwen3-vl": 402_653_184}


@pytest.mark.parametrize("preset", sorted(WORST_CASE_FLOAT32_BYTES))
def test_documented_worst_case_output_size(preset):
    cfg = qvp.PRESETS[preset]
    rows = cfg.max_pixels // cfg.patch_size ** 2
    assert rows * cfg.patch_dim * 4 == WORST_CASE_FLOAT32_BYTES[preset]
    side = int(cfg.max_pixels ** 0.5)
    for h, w in [(side, side), (10 * side, 10 * side), (side, 3 * side), (40_000, 200)]:
        th, tw = qvp.smart_resize(h, w, cfg.factor, cfg.min_pixels, cfg.max_pixels)
        assert (th // cfg.patch_size) * (tw // cfg.patch_size) <= rows


def test_cpu_peak_memory_of_an_8192_square_image():
    """8192 x 8192 uint8 (192 MiB) with qwen2-vl -> 65536 rows (294 MiB float32); ~5 s, ~1 GiB, one run.

    The Pillow path holds, besides the output: an HWC copy of the input (1x input), Pillow's own 4-byte
    RGBX copies of the strips being resampled (4/3x input), the first pass's result and its Pillow image
    (~2x of an image that has the output's width and the input's height, <= 1x input here) and float32
    staging of the last pass (<= 1/temporal_patch_size of the output). That is <= ~3.3x input + 1.5x output,
    so 3x (input + output) holds with room for allocator slack; measured: 1.66x.
    """
    r = _memory_bounds().measure("cpu", 8192, "uint8", "qwen2-vl")
    assert r["rows"] == 65536
    assert r["extra_bytes"] <= 3 * (r["input_bytes"] + r["output_bytes"]), r


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("backend,bound", [
    # reference (the torch port): an int32 copy of the input (4x input), three int32 temporaries of the first pass's result
    # (3 x 4 x 16384 x 3584 x 3 B = 2.6x input) and the output: ~5x (input + output) at 16384^2 -> 3584^2.
    ("reference", 6.0),
    # Triton: a uint8 scratch of the first pass (<= input) and the output, written once.
    pytest.param("triton", 3.0, marks=pytest.mark.skipif(not triton_runs("cuda"),
                                                          reason="the Triton backend cannot run here")),
])
@pytest.mark.parametrize("side", [8192, 16384])
def test_cuda_peak_memory_of_huge_images(side, backend, bound):
    r = _memory_bounds().measure("cuda", side, "uint8", "qwen2-vl", backend)
    print(r)
    assert r["rows"] == 65536
    assert r["extra_bytes"] <= bound * (r["input_bytes"] + r["output_bytes"]), r


@pytest.mark.parametrize("mode", ["pil", "float"])
def test_reference_backend_slices_huge_images_exactly(monkeypatch, mode):
    """Regression (GPU memory, issue #6): the reference backend's passes widened the whole image to
    int32/float64 at once (about 5x input + output at 16384^2 on CUDA); they now go in slices. Slicing must
    not change a bit."""
    from qwen_vis_prep.backends import reference

    x = _u8(2, 3, 123, 211, seed=5)
    cfg = SMALL.replace(resize_mode=mode, min_pixels=28 * 28, max_pixels=28 * 28 * 30)
    whole = qvp.preprocess(x, cfg, backend="reference").pixel_values
    monkeypatch.setattr(reference, "CHUNK_ELEMENTS", 1000)
    sliced = qvp.preprocess(x, cfg, backend="reference").pixel_values
    assert torch.equal(sliced, whole)
    if mode == "pil":
        from PIL import Image

        img = x[0].permute(1, 2, 0).numpy()
        for size in [(50, 300), (300, 50)]:
            ref = np.asarray(Image.fromarray(img).resize(size[::-1], Image.Resampling.BICUBIC))
            got = qvp.resize(x[0], size, backend="reference").permute(1, 2, 0).numpy()
            assert np.array_equal(got, ref)
