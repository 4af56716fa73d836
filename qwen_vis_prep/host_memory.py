"""Large CPU output buffers: huge pages, and freed buffers recycled instead of faulted in again.

A fresh CPU buffer of tens of MB costs more to touch the first time than to fill: the kernel faults in and
zeroes every page on first write. On the 2-core test machine a 50 MB output costs about 11 ms with 4 KiB
pages and 2.4 ms with transparent huge pages, against well under a millisecond to rewrite a buffer whose
pages are already there. So :func:`empty` does two things for CPU buffers of :data:`MIN_BYTES` or more:

* it asks for huge pages (``madvise(MADV_HUGEPAGE)``) behind every new buffer;
* it hands out buffers from a small cache of freed ones (like torch's CUDA caching allocator). A buffer
  goes back to the cache only when the last tensor, view, storage or NumPy array using it is gone (the
  tensor borrows an ``mmap`` through NumPy, and the NumPy array's finaliser returns it), so a live tensor
  never shares memory with another. The cache keeps at most :func:`cache_limit` bytes of free buffers
  (``QWEN_VIS_PREP_HOST_CACHE_MB``; by default 2048 MiB or an eighth of the physical memory, whichever is
  less; ``0`` turns recycling off) and :func:`empty_cache` drops them.

What changes for the caller: a recycled tensor's storage cannot grow in place (``resize_`` to a larger
size raises, as for any tensor from ``torch.from_numpy``); shrinking, views, ``share_memory_()``,
pickling and multiprocessing queues work as usual. Contents are never read: like ``torch.empty``, the
buffer is uninitialised, and every caller overwrites all of it.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import mmap
import os
import sys
import threading
import weakref

import numpy as np
import torch

_MADV_HUGEPAGE = 14
_HUGE = 1 << 21
MIN_BYTES = 4 << 20  # below this, faults are cheap and most of the buffer would not be 2 MiB aligned
CACHE_ENV = "QWEN_VIS_PREP_HOST_CACHE_MB"
_DEFAULT_CACHE_MB = 2048
_MAX_SLACK = 1.25  # a cached buffer serves a request it exceeds by at most this factor (plus one huge page)


def _load_madvise():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.madvise
    except (OSError, AttributeError):  # pragma: no cover - depends on the platform
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_MADVISE = _load_madvise()


def _advise(ptr: int, nbytes: int) -> None:
    """``madvise(MADV_HUGEPAGE)`` on the 2 MiB-aligned inside of ``[ptr, ptr + nbytes)`` (advice only)."""
    start = (ptr + _HUGE - 1) & ~(_HUGE - 1)
    end = (ptr + nbytes) & ~(_HUGE - 1)
    if _MADVISE is not None and end > start:
        _MADVISE(start, end - start, _MADV_HUGEPAGE)  # a failure changes nothing


def advise_huge_pages(t: torch.Tensor) -> torch.Tensor:
    """Ask for huge pages behind a large, not yet touched CPU tensor; returns ``t`` (no-op elsewhere)."""
    nbytes = t.numel() * t.element_size()
    if t.device.type == "cpu" and nbytes >= MIN_BYTES:
        _advise(t.data_ptr(), nbytes)
    return t


def default_cache_limit() -> int:
    """2048 MiB, or an eighth of the physical memory where that is less."""
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - platform without sysconf
        physical = 0
    limit = _DEFAULT_CACHE_MB << 20
    return min(limit, physical // 8) if physical > 0 else limit


def _limit_from_env() -> int:
    raw = os.environ.get(CACHE_ENV)
    if raw is None or raw.strip() == "":
        return default_cache_limit()
    try:
        mb = int(raw)
    except ValueError:
        raise ValueError(f"{CACHE_ENV} must be a whole number of MiB >= 0, got {raw!r}") from None
    if mb < 0:
        raise ValueError(f"{CACHE_ENV} must be a whole number of MiB >= 0, got {raw!r}")
    return mb << 20


class _Block:
    """One anonymous mapping; ``offset`` puts the usable part on a 2 MiB boundary."""

    __slots__ = ("mapping", "offset", "capacity")

    def __init__(self, capacity: int):
        self.mapping = mmap.mmap(-1, capacity + _HUGE)
        address = np.frombuffer(self.mapping, np.uint8, count=1).ctypes.data
        self.offset = (-address) % _HUGE
        self.capacity = capacity
        _advise(address + self.offset, capacity)


class _BufferCache:
    """Free blocks, oldest first, at most ``limit`` bytes. Finalisers only append to ``_returned`` (a deque
    append is atomic and takes no lock, so a finaliser running inside a locked section cannot deadlock);
    returned blocks join the free list under the lock."""

    def __init__(self, limit: int):
        self.limit = limit
        self._lock = threading.Lock()
        self._free: list[_Block] = []
        self._returned: collections.deque[_Block] = collections.deque()

    def _absorb(self) -> None:  # under the lock
        while self._returned:
            self._free.append(self._returned.popleft())
        total = sum(b.capacity for b in self._free)
        while self._free and total > self.limit:
            total -= self._free.pop(0).capacity

    def take(self, nbytes: int) -> _Block:
        need = -(-nbytes // _HUGE) * _HUGE
        with self._lock:
            self._absorb()
            fits = [b for b in self._free if need <= b.capacity <= need * _MAX_SLACK + _HUGE]
            if fits:
                best = min(fits, key=lambda b: b.capacity)
                self._free.remove(best)
                return best
        return _Block(need)

    def give(self, block: _Block) -> None:
        if block.capacity > self.limit:
            return
        self._returned.append(block)
        if self._lock.acquire(blocking=False):  # keep the bound without waiting; the next take() absorbs otherwise
            try:
                self._absorb()
            finally:
                self._lock.release()

    def clear(self) -> None:
        with self._lock:
            self._returned.clear()
            self._free.clear()

    def cached_bytes(self) -> int:
        with self._lock:
            self._absorb()
            return sum(b.capacity for b in self._free)


_CACHE = _BufferCache(_limit_from_env())
if hasattr(os, "register_at_fork"):  # a child must not inherit a lock held by another thread
    os.register_at_fork(after_in_child=lambda: setattr(_CACHE, "_lock", threading.Lock()))


def cache_limit() -> int:
    """Bytes of freed CPU output buffers kept for reuse at most (0: recycling is off)."""
    return _CACHE.limit


def set_cache_limit(nbytes: int) -> None:
    """Keep at most ``nbytes`` of freed CPU output buffers for reuse; ``0`` turns recycling off (new
    buffers are then plain ``torch.empty`` storages again). Drops cached buffers over the new limit."""
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
        raise ValueError(f"set_cache_limit expects a whole number of bytes >= 0, got {nbytes!r}")
    with _CACHE._lock:
        _CACHE.limit = nbytes
        _CACHE._absorb()


def cached_bytes() -> int:
    """Bytes of freed CPU output buffers held for reuse right now."""
    return _CACHE.cached_bytes()


def empty_cache() -> None:
    """Release every cached free buffer to the operating system (live tensors are not affected)."""
    _CACHE.clear()


def _recycled(nbytes: int) -> torch.Tensor:
    """``[nbytes] uint8`` CPU tensor on a cached or new block; the block returns to the cache when the
    last user of the tensor's storage is gone."""
    block = _CACHE.take(nbytes)
    array = np.frombuffer(block.mapping, np.uint8, count=nbytes, offset=block.offset)
    fin = weakref.finalize(array, _CACHE.give, block)
    fin.atexit = False
    return torch.from_numpy(array)


def empty(shape, dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.Tensor:
    """``torch.empty(shape, dtype=dtype, device=device)``, contiguous and uninitialised. On the CPU, buffers
    of :data:`MIN_BYTES` or more come from the recycled-buffer cache (see the module docstring) or, with
    recycling off, are plain storages advised to use huge pages."""
    device = torch.device(device)
    shape = torch.Size(shape)
    nbytes = shape.numel() * dtype.itemsize
    if device.type != "cpu" or nbytes < MIN_BYTES:
        return torch.empty(shape, dtype=dtype, device=device)
    if _CACHE.limit == 0:
        return advise_huge_pages(torch.empty(shape, dtype=dtype))
    return _recycled(nbytes).view(dtype).view(shape)
