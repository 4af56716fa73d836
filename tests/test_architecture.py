"""The package's shape: no import cycle at any depth, backends independent of the front end, one owner of
the presets and of the patch layout."""

from __future__ import annotations

import ast
from pathlib import Path

import torch

import qwen_vis_prep as qvp
from qwen_vis_prep import layout, presets

PACKAGE = Path(qvp.__file__).resolve().parent
FRONT_END = {"qwen_vis_prep.functional", "qwen_vis_prep.module", "qwen_vis_prep.video", "qwen_vis_prep.encoder",
             "qwen_vis_prep.hf_adapter", "qwen_vis_prep.cli", "qwen_vis_prep"}


def _module_name(path: Path) -> str:
    parts = ("qwen_vis_prep", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Ids of the import nodes under ``if TYPE_CHECKING:`` (annotations only: never run)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its source (top level, functions, branches),
    except imports for annotations only (under ``if TYPE_CHECKING:``)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found: set[str] = set()
        tree = ast.parse(path.read_text())
        skip = _type_checking_only(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names]
                found.update(t for t in targets if t in modules)
                if not any(t in modules for t in targets):
                    found.add(base)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_no_import_cycle_at_any_depth():
    graph = import_graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_backends_import_nothing_from_the_front_end():
    graph = import_graph()
    offenders = {m: sorted(graph[m] & FRONT_END) for m in graph if m.startswith("qwen_vis_prep.backends")}
    assert not any(offenders.values()), offenders


def test_every_preset_reads_from_the_one_table():
    for name, preset in presets.MODEL_PRESETS.items():
        assert qvp.PRESETS[name] is preset.image and qvp.VIDEO_PRESETS[name] is preset.video
        assert qvp.VisionPreprocessConfig.from_preset(name) is preset.image
        assert qvp.VideoConfig.from_preset(name) is preset.video
        module = qvp.QwenVisionPreprocessor(name)
        assert module.config is preset.image and module.video_config is preset.video
        assert module.window_size == preset.window_size


def test_video_sizing_of_a_config_comes_from_its_family():
    # overridden budgets keep the family; constants of no preset get the generic Qwen2-VL video rules
    assert presets.default_video_config(qvp.PRESETS["qwen3-vl"].replace(max_pixels=10**6)).sizing == "qwen3-vl"
    assert presets.default_video_config(qvp.PRESETS["qwen2.5-vl"]).sizing == "qwen2-vl"
    odd = qvp.VisionPreprocessConfig(patch_size=8, image_mean=0.1, image_std=0.2)
    assert presets.presets_of(odd) == [] and presets.default_video_config(odd) is qvp.VIDEO_PRESETS["qwen2-vl"]


def test_layout_index_math_matches_the_reference_patchify():
    """``layout.patch_row`` / ``patch_column`` address every value ``patchify_into`` writes (images and clips)."""
    g = torch.Generator().manual_seed(0)
    for p, m, t, (h, w), frames in [(14, 2, 2, (56, 84), 1), (16, 2, 2, (64, 32), 1), (4, 3, 1, (24, 36), 1),
                                    (2, 2, 2, (8, 12), 5)]:
        x = torch.randn(frames, 3, h, w, generator=g)
        gh, gw = h // p, w // p
        blocks = -(-frames // t) if frames > 1 else 1
        out = torch.empty(blocks * gh * gw, 3 * t * p * p)
        if frames > 1:
            layout.patchify_video_into(out, x, p, m, t)
        else:
            layout.patchify_into(out, x, p, m, t)
        for gy, gx, c, slot, py, px in [(0, 0, 0, 0, 0, 0), (gh - 1, gw - 1, 2, t - 1, p - 1, p - 1),
                                        (1, gw // 2, 1, 0, p // 2, 1)]:
            frame = min(slot, frames - 1)
            row = layout.patch_row(gy, gx, gw, m)
            col = layout.patch_column(c, slot, py, px, t, p)
            assert out[row, col] == x[frame, c, gy * p + py, gx * p + px]
        first_block = x[:t] if frames > 1 else x.expand(t, -1, -1, -1)
        assert torch.equal(layout.unpatchify(out[:gh * gw], (1, gh, gw), p, m), first_block)
