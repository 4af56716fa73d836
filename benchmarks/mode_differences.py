"""How far apart the three resize modes are, in uint8 levels: the table in docs/exactness.md.

Run: ``python benchmarks/mode_differences.py`` (CPU, a few seconds). For each pair of modes and each kind of
resize it prints the largest difference in levels and the share of values that differ, on real photos
(scikit-image's bundled ``astronaut``, ``chelsea``, ``coffee``, ``rocket``) and on uniform noise of the same
sizes. ``resize(mode=...)`` of this package is bit-exact with the kernel each mode names (tests/), so these
are the differences between Pillow, torch's CPU uint8 kernel and torch's float path themselves.
"""

from __future__ import annotations

import platform

import numpy as np
import PIL
import torch
from skimage import data

import qwen_vis_prep as qvp

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
# (name, (dh, dw) as a function of the input size): the kinds of resize smart_resize produces
KINDS = {
    "both down (about 0.6x)": lambda h, w: (h * 3 // 5, w * 3 // 5),
    "both up (about 1.4x)": lambda h, w: (h * 7 // 5, w * 7 // 5),
    "one side down 8, the other up 2": lambda h, w: (h - 8, w + 2),
    "one side up 2, the other down 6": lambda h, w: (h + 2, w - 6),
}
# "pil12": pil mode in Pillow 12's pass order (always width first, as torch's kernel)
PAIRS = [("torch-uint8", "pil"), ("torch-uint8", "pil12"), ("float", "torch-uint8")]


def images(noise: bool) -> list[torch.Tensor]:
    rng = np.random.default_rng(0)
    out = []
    for name in PHOTOS:
        photo = torch.from_numpy(np.ascontiguousarray(getattr(data, name)())).permute(2, 0, 1).contiguous()
        out.append(torch.from_numpy(rng.integers(0, 256, photo.shape, dtype=np.uint8)) if noise else photo)
    return out


def compare(a: str, b: str, kind, noise: bool) -> tuple[int, float]:
    worst, differing, total = 0, 0, 0
    for img in images(noise):
        size = kind(*img.shape[-2:])
        x, y = (qvp.resize(img, size, mode="pil", pillow_order="pillow12").int() if m == "pil12"
                else qvp.resize(img, size, mode=m).int() for m in (a, b))
        worst = max(worst, int((x - y).abs().max()))
        differing += int((x != y).sum())
        total += x.numel()
    return worst, differing / total


def main() -> None:
    print(f"torch {torch.__version__} (CPU capability {torch.backends.cpu.get_cpu_capability()}), "
          f"Pillow {PIL.__version__}, {platform.machine()}\n")
    print("| pair | resize | photos: max levels, share differing | noise: max levels, share differing |")
    print("|---|---|---|---|")
    for a, b in PAIRS:
        for label, kind in KINDS.items():
            cells = [f"{w}, {share:.1%}" for w, share in (compare(a, b, kind, n) for n in (False, True))]
            print(f"| {a} vs {b} | {label} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
