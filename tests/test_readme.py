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


def test_readme_model_snippet_feeds_a_real_tower():
    """README's ``VisionModel`` on a tiny Qwen2.5-VL tower gives what the tower computes from the grids itself."""
    import pytest
    import torch

    pytest.importorskip("transformers")
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    snippet = next(b for b in blocks if "class VisionModel" in b)
    namespace: dict = {"torch": torch, "qvp": __import__("qwen_vis_prep")}
    exec(compile(snippet, str(README), "exec"), namespace)
    torch.manual_seed(0)
    config = Qwen2_5_VLVisionConfig(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=48,
                                    window_size=112, fullatt_block_indexes=[1])
    tower = Qwen2_5_VisionTransformerPretrainedModel._from_config(config, dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (3, 90, 150), generator=g, dtype=torch.uint8),
              torch.randint(0, 256, (3, 120, 64), generator=g, dtype=torch.uint8)]
    model = namespace["VisionModel"](tower)
    with torch.no_grad():
        ours = model(images).pooler_output
        batch = model.prep(images)
        ref = tower(batch.pixel_values, grid_thw=batch.grid_thw).pooler_output
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
