"""``python -m qwen_vis_prep``: the ``qwen-vis-prep`` command line."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
