"""Huge-page backed CPU buffers (qwen_vis_prep/host_memory.py): contents and semantics unchanged, and the
advice covers exactly the 2 MiB-aligned inside of large buffers. (Whether the kernel then backs them with
huge pages is its business: this machine's guest kernel does not report them in smaps, so the effect is
measured in benchmarks, not asserted here.)"""

from __future__ import annotations

import pytest
import torch

from qwen_vis_prep import host_memory


def test_empty_is_a_plain_tensor():
    for shape, dtype in [((3, 5), torch.float32), ((2048, 1176), torch.float32), ((4096, 1176), torch.bfloat16)]:
        t = host_memory.empty(shape, dtype)
        assert t.shape == shape and t.dtype == dtype and t.device.type == "cpu" and t.is_contiguous()
        t.fill_(1.5)
        assert torch.equal(t, torch.full(shape, 1.5, dtype=dtype))
        t.resize_(0)  # an ordinary, resizable torch storage (not borrowed from numpy)


def test_small_and_non_cpu_buffers_are_left_alone(monkeypatch):
    calls = []
    monkeypatch.setattr(host_memory, "_MADVISE", lambda *a: calls.append(a) or 0)
    host_memory.empty((100, 100), torch.float32)
    assert calls == []
    host_memory.empty((host_memory.MIN_BYTES // 4 + (1 << 20),), torch.float32)
    assert len(calls) == 1
    start, length, advice = calls[0]
    assert start % (1 << 21) == 0 and length % (1 << 21) == 0 and advice == 14
