"""README.md's Python examples run as written (in one namespace, in order)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run_verbatim(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2, "README lost its API tour"
    namespace: dict = {"__name__": "readme"}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["out"].pixel_values.shape == (int(namespace["out"].grid_thw.prod(1).sum()), 1176)
    assert "112 torch.bfloat16" in capsys.readouterr().out
