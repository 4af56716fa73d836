"""Build of the optional compiled resampler (``qwen_vis_prep._resample``); everything else is in pyproject.toml.

The extension is optional: where it cannot be compiled (no C compiler), pip installs the package without it
and the CPU backends fall back to Pillow and torch's own kernels (``qwen_vis_prep.backends.native``).
"""

import os

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "qwen_vis_prep._resample",
    ["qwen_vis_prep/_resample.c"],
    # -fno-wrapv: Python's own CFLAGS carry -fwrapv, which stops GCC vectorising the int32 loops
    extra_compile_args=["-O3", "-fno-wrapv"] if os.name == "posix" else [],
    optional=True,
)])
