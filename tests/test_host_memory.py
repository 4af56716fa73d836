"""Large CPU output buffers (qwen_vis_prep/host_memory.py): plain tensors to the caller, huge-page advice on
the 2 MiB-aligned inside of new buffers, and freed buffers recycled only once nothing uses them any more.
(Whether the kernel then backs them with huge pages is its business: this machine's guest kernel does not
report them in smaps, so that effect is measured in benchmarks, not asserted here.)"""

from __future__ import annotations

import gc
import io
import pickle
import threading
from multiprocessing.reduction import ForkingPickler

import numpy as np
import pytest
import torch

import qwen_vis_prep as qvp
from qwen_vis_prep import host_memory

BIG = (2048, 1176)  # 9.6 MB of float32: above MIN_BYTES


@pytest.fixture(autouse=True)
def fresh_cache():
    limit = host_memory.cache_limit()
    host_memory.set_cache_limit(1 << 30)
    host_memory.empty_cache()
    yield
    host_memory.empty_cache()
    host_memory.set_cache_limit(limit)


def span(t: torch.Tensor) -> tuple[int, int]:
    return t.data_ptr(), t.data_ptr() + t.numel() * t.element_size()


def test_empty_is_a_plain_tensor():
    for shape, dtype in [((3, 5), torch.float32), (BIG, torch.float32), ((4096, 1176), torch.bfloat16),
                         ((4096, 1176), torch.float16)]:
        t = host_memory.empty(shape, dtype)
        assert t.shape == shape and t.dtype == dtype and t.device.type == "cpu" and t.is_contiguous()
        assert t.data_ptr() % 64 == 0
        t.fill_(1.5)
        assert torch.equal(t, torch.full(shape, 1.5, dtype=dtype))


def test_recycled_storage_shrinks_but_does_not_grow():
    t = host_memory.empty(BIG, torch.float32)
    t.resize_(10)  # shrinking keeps the buffer
    with pytest.raises(RuntimeError, match="not resizable"):
        t.resize_(BIG[0] * BIG[1] * 2)


def test_with_recycling_off_buffers_are_ordinary_torch_storages():
    host_memory.set_cache_limit(0)
    t = host_memory.empty(BIG, torch.float32)
    t.resize_(BIG[0] * BIG[1] * 2)  # an ordinary, resizable storage (not borrowed from NumPy)
    del t
    assert host_memory.cached_bytes() == 0


def test_freed_buffer_is_reused():
    t = host_memory.empty(BIG, torch.float32)
    first = t.data_ptr()
    del t
    assert host_memory.cached_bytes() >= BIG[0] * BIG[1] * 4
    u = host_memory.empty(BIG, torch.float32)
    assert u.data_ptr() == first
    assert host_memory.cached_bytes() == 0


@pytest.mark.parametrize("keep", ["view", "numpy", "storage", "dtype-view"])
def test_buffer_in_use_is_not_handed_out(keep):
    t = host_memory.empty(BIG, torch.float32)
    t.fill_(7.0)
    holder = {"view": lambda: t[5:9], "numpy": lambda: t.numpy(), "storage": lambda: t.untyped_storage(),
              "dtype-view": lambda: t.view(torch.int32)}[keep]()
    lo, hi = span(t)
    del t
    gc.collect()
    u = host_memory.empty(BIG, torch.float32)
    ulo, uhi = span(u)
    assert uhi <= lo or ulo >= hi  # no overlap with memory still in use
    u.fill_(-1.0)
    if keep == "storage":
        whole = torch.empty(0, dtype=torch.float32).set_(holder)
    else:
        whole = torch.as_tensor(holder).view(torch.float32)
    assert bool((whole == 7.0).all())
    before = host_memory.cached_bytes()
    del holder, whole
    assert host_memory.cached_bytes() >= before + BIG[0] * BIG[1] * 4  # the last user is gone: it is back


def test_cache_keeps_at_most_its_limit():
    nbytes = BIG[0] * BIG[1] * 4
    host_memory.set_cache_limit(3 * nbytes)
    tensors = [host_memory.empty(BIG, torch.float32) for _ in range(6)]
    del tensors
    assert 0 < host_memory.cached_bytes() <= 3 * nbytes
    host_memory.set_cache_limit(nbytes // 2)  # smaller than any block: none is kept
    assert host_memory.cached_bytes() == 0
    t = host_memory.empty(BIG, torch.float32)
    del t
    assert host_memory.cached_bytes() == 0
    host_memory.set_cache_limit(1 << 30)
    t = host_memory.empty(BIG, torch.float32)
    del t
    assert host_memory.cached_bytes() > 0
    host_memory.empty_cache()
    assert host_memory.cached_bytes() == 0


def test_a_much_bigger_cached_buffer_is_not_used_for_a_small_request():
    big = host_memory.empty((8 * BIG[0], BIG[1]), torch.float32)
    big_ptr = big.data_ptr()
    del big
    small = host_memory.empty(BIG, torch.float32)
    assert small.data_ptr() != big_ptr
    assert host_memory.cached_bytes() >= 8 * BIG[0] * BIG[1] * 4


def test_new_buffers_start_on_a_huge_page_and_are_advised(monkeypatch):
    calls = []
    monkeypatch.setattr(host_memory, "_MADVISE", lambda *a: calls.append(a) or 0)
    host_memory.empty((100, 100), torch.float32)
    assert calls == []
    t = host_memory.empty(BIG, torch.float32)
    assert t.data_ptr() % (1 << 21) == 0
    (start, length, advice), = calls
    assert start == t.data_ptr() and length >= BIG[0] * BIG[1] * 4 and length % (1 << 21) == 0
    assert advice == 14


def test_with_recycling_off_only_the_aligned_inside_is_advised(monkeypatch):
    host_memory.set_cache_limit(0)
    calls = []
    monkeypatch.setattr(host_memory, "_MADVISE", lambda *a: calls.append(a) or 0)
    host_memory.empty((host_memory.MIN_BYTES // 4 + (1 << 20),), torch.float32)
    (start, length, advice), = calls
    assert start % (1 << 21) == 0 and length % (1 << 21) == 0 and advice == 14


def test_shared_memory_and_pickling_work_and_release_the_buffer():
    t = host_memory.empty(BIG, torch.float32)
    t.copy_(torch.arange(t.numel(), dtype=torch.float32).view(BIG))
    expected = t.clone()
    t.share_memory_()  # moves the data to shared memory; our buffer is no longer used
    assert t.is_shared() and torch.equal(t, expected)
    assert host_memory.cached_bytes() > 0
    u = host_memory.empty(BIG, torch.float32)
    u.copy_(expected)
    buf = io.BytesIO()
    ForkingPickler(buf).dump(u)  # what a DataLoader worker or multiprocessing queue does
    assert torch.equal(pickle.loads(buf.getvalue()), expected)
    assert torch.equal(pickle.loads(pickle.dumps(u)), expected)


def test_threads_never_share_a_live_buffer():
    errors = []

    def worker(k: int) -> None:
        for i in range(40):
            shape = (BIG[0] + 28 * (i % 3), BIG[1])
            t = host_memory.empty(shape, torch.float32)
            t.fill_(float(k))
            if not bool((t == k).all()):
                errors.append((k, i))
            del t

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []


def test_default_limit_is_bounded_by_physical_memory(monkeypatch):
    import os

    monkeypatch.delenv(host_memory.CACHE_ENV, raising=False)
    assert host_memory._limit_from_env() == host_memory.default_cache_limit()
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert host_memory.default_cache_limit() == min(2048 << 20, physical // 8)
    pages = {"SC_PHYS_PAGES": (1 << 30) // 4096, "SC_PAGE_SIZE": 4096}  # a 1 GiB machine: 128 MiB
    monkeypatch.setattr(os, "sysconf", lambda name: pages[name])
    assert host_memory.default_cache_limit() == 128 << 20


def test_env_limit_is_validated(monkeypatch):
    monkeypatch.setenv(host_memory.CACHE_ENV, "64")
    assert host_memory._limit_from_env() == 64 << 20
    monkeypatch.setenv(host_memory.CACHE_ENV, "0")
    assert host_memory._limit_from_env() == 0
    for bad in ("lots", "-1", "1.5"):
        monkeypatch.setenv(host_memory.CACHE_ENV, bad)
        with pytest.raises(ValueError, match=host_memory.CACHE_ENV):
            host_memory._limit_from_env()
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="set_cache_limit"):
            host_memory.set_cache_limit(bad)


def test_preprocess_outputs_are_independent_and_exact_with_recycling():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(700, 900), (640, 1000)]]
    cfg = qvp.PRESETS["qwen2-vl"]
    host_memory.set_cache_limit(0)
    expected = [qvp.preprocess(im, cfg).pixel_values for im in images]
    host_memory.set_cache_limit(1 << 30)
    first = qvp.preprocess(images[0], cfg).pixel_values
    for _ in range(3):  # recycled buffers for the second image while the first output is alive
        second = qvp.preprocess(images[1], cfg).pixel_values
        assert torch.equal(second, expected[1])
        del second
    assert torch.equal(first, expected[0])
    ptr = first.data_ptr()
    del first
    again = [qvp.preprocess(im, cfg).pixel_values for im in images]  # both buffers are free again
    assert ptr in {t.data_ptr() for t in again}
    assert all(torch.equal(a, e) for a, e in zip(again, expected))
