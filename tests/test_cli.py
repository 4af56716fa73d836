"""The qwen-vis-prep command line, run in-process through ``main(argv)``: outputs checked against the library
calls they stand for, per-file errors, exit codes, and the messages for missing optional packages."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import PIL.Image
import pytest
import torch

from qwen_vis_prep import PRESETS, VIDEO_PRESETS, load_video, preprocess, preprocess_videos
from qwen_vis_prep import cli
from qwen_vis_prep.cli import build_parser, main
from qwen_vis_prep.io import load_image, sample_images

DATA = Path(__file__).parent / "data"
QWEN2_VL_JSON = DATA / "Qwen2-VL-7B-Instruct" / "preprocessor_config.json"


def _config_file(tmp_path: Path, **changes) -> Path:
    """The released Qwen2-VL preprocessor_config.json with ``changes`` applied, written under tmp_path."""
    data = {**json.loads(QWEN2_VL_JSON.read_text()), **changes}
    path = tmp_path / "preprocessor_config.json"
    path.write_text(json.dumps(data))
    return path


def _run_module(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qwen_vis_prep", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


@pytest.fixture
def image_tree(tmp_path):
    """samples in nested folders, plus a broken PNG found by the walk and a text file."""
    root = tmp_path / "imgs"
    (root / "sub" / "deeper").mkdir(parents=True)
    for p in sample_images():
        dest = root / ("sub/deeper" if p.suffix == ".png" else "") / p.name
        shutil.copy(p, dest)
    (root / "sub" / "broken.png").write_bytes(b"definitely not a png")
    (root / "sub" / "notes.txt").write_text("skipped by the directory walk")
    return root


def test_preprocess_writes_safetensors_matching_library(image_tree, tmp_path, capsys):
    safetensors = pytest.importorskip("safetensors.torch")
    out = tmp_path / "out.safetensors"
    code = main(["preprocess", str(image_tree), "-o", str(out), "--preset", "qwen3-vl", "--no-progress",
                 "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1  # the broken PNG
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: {image_tree / 'sub' / 'broken.png'}: unsupported or unrecognised image format"]
    tensors = safetensors.load_file(out)
    with safetensors.safe_open(out, "pt") as f:
        meta = f.metadata()
    files = json.loads(meta["files"])
    assert len(files) == len(sample_images()) and all(Path(f).exists() for f in files)
    assert files == sorted(files)  # the recursive walk is sorted
    expected = preprocess([load_image(f) for f in files], PRESETS["qwen3-vl"])
    assert torch.equal(tensors["pixel_values"], expected.pixel_values)
    assert torch.equal(tensors["grid_thw"], expected.grid_thw)
    assert tensors["image_sizes"].tolist() == [list(load_image(f).shape[-2:]) for f in files]
    assert json.loads(meta["config"])["patch_size"] == 16


def test_preprocess_bad_paths_go_on_and_exit_nonzero(tmp_path, capsys):
    pytest.importorskip("safetensors")
    good = sample_images()[1]
    (tmp_path / "bad.jpg").write_bytes(good.read_bytes()[:1000])
    out = tmp_path / "o.safetensors"
    code = main(["preprocess", str(good), str(tmp_path / "missing.png"), str(tmp_path / "bad.jpg"),
                 "-o", str(out), "--dtype", "bfloat16", "--no-progress", "--batch-size", "2", "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 1 and out.exists()
    lines = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert lines == [f"error: {tmp_path / 'missing.png'}: no such file or directory",
                     f"error: {tmp_path / 'bad.jpg'}: corrupt or unsupported JPEG: Image is incomplete or truncated"]
    assert "2 file(s) failed, 1 processed" in captured.err
    assert "bfloat16" in captured.out


def test_preprocess_rejected_image_is_reported_alone(tmp_path, capsys):
    """An image the core refuses (aspect ratio above 200) fails alone; its batch neighbours go through."""
    PIL.Image.new("RGB", (1000, 4), "red").save(tmp_path / "sliver.png")
    shutil.copy(sample_images()[0], tmp_path / "ok.jpg")
    code = main(["preprocess", str(tmp_path), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    assert "sliver.png: absolute aspect ratio" in captured.err and "ok.jpg" in captured.out


def test_preprocess_without_arguments_uses_samples(capsys):
    assert main(["preprocess", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "bundled sample images" in captured.err
    for p in sample_images():
        assert p.name in captured.out
    assert "pass -o out.safetensors" in captured.out


def test_preprocess_progress_bar(capsys):
    pytest.importorskip("tqdm")
    assert main(["preprocess", str(sample_images()[0])]) == 0
    err = capsys.readouterr().err
    assert "preprocess: 100%" in err and "1/1" in err


def test_missing_safetensors_gives_clear_message(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    code = main(["preprocess", str(sample_images()[0]), "-o", str(tmp_path / "x.safetensors")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == ("qwen-vis-prep preprocess: error: writing -o/--output needs the 'safetensors' package, "
                           "which is not installed: pip install 'qwen_vis_prep[cli]'")


def test_missing_tqdm_only_drops_the_bar(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    assert main(["preprocess", str(sample_images()[0])]) == 0
    assert "no progress bar ('tqdm' is not installed" in capsys.readouterr().err


def test_missing_matplotlib_for_plot(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["bench", "--quick", "--plot", str(tmp_path / "p.png")]) == 2
    assert "needs the 'matplotlib' package" in capsys.readouterr().err


def test_bench_quick_with_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "bench.png"
    assert main(["bench", "--quick", "--repeat", "1", "--sizes", "64", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "qwen_vis_prep cpu" in out and "img/s" in out
    if "transformers" in sys.modules or _has("transformers"):
        assert "HF PIL" in out and "HF torchvision cpu" in out
    with PIL.Image.open(plot) as im:
        assert im.width > 300 and im.height > 200


def test_check_reports_parity_on_samples(capsys):
    mod = pytest.importorskip("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")
    clear_black = PIL.Image.new("RGBA", (56, 56), (0, 0, 0, 0))
    if mod.Qwen2VLImageProcessorPil()(clear_black, return_tensors="pt")["pixel_values"][0, 0] > 0:
        assert main(["check"]) == 0
        n = len(sample_images())
    else:  # this transformers does not composite RGBA onto white (5.17 does not, 5.24 does): check reports it
        assert main(["check"]) == 1
        n = len(sample_images()) - 1
    assert f"{n}/{len(sample_images())} match" in capsys.readouterr().out


def test_check_with_model_dir_and_bad_file(tmp_path, capsys):
    pytest.importorskip("transformers")
    (tmp_path / "x.png").write_text("nope")
    code = main(["check", str(sample_images()[2]), str(tmp_path / "x.png"), "--config",
                 str(DATA / "Qwen3-VL-8B-Instruct"), "--decoder", "cpu"])
    captured = capsys.readouterr()
    assert code == 1
    assert "1/1 match" in captured.out and f"error: {tmp_path / 'x.png'}: unsupported" in captured.err


def test_show_writes_patch_picture(tmp_path, capsys):
    out = tmp_path / "patches.png"
    src = sample_images()[1]
    assert main(["show", str(src), "-o", str(out), "--scale", "1", "--max-pixels", "100000"]) == 0
    printed = capsys.readouterr().out
    config = PRESETS["qwen2-vl"].replace(max_pixels=100000)
    batch = preprocess(load_image(src), config)
    _, gh, gw = batch.grid_thw[0].tolist()
    assert gh != gw  # so rows and columns cannot be mixed up unnoticed
    assert printed.strip() == (f"wrote {out}: {gw * 14}x{gh * 14} px (width x height) resized image, "
                               f"{gh} rows x {gw} columns of 14px patches ({gh * gw} in all), "
                               f"{gh * gw // 4} tokens, drawn at 1x")
    with PIL.Image.open(out) as im:
        assert im.mode == "RGB"
        assert im.width >= gw * config.patch_size and im.height > gh * config.patch_size  # + the title bar


def test_show_without_arguments(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["show"]) == 0
    assert (tmp_path / "chelsea_patches.png").exists()


def test_show_bad_file_one_line(tmp_path, capsys):
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8\xff\xe0 nope")
    assert main(["show", str(tmp_path / "x.jpg"), "-o", str(tmp_path / "o.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {tmp_path / 'x.jpg'}: corrupt or unsupported JPEG") and "\n" not in err


# -------------------------------------------------------------------------------------------------- videos


def _encode_clip(path: Path, frames: int = 12, rate: int = 6) -> Path:
    """A 64x48 clip whose frames differ (a moving square over a gradient whose colour changes), via PyAV."""
    av = pytest.importorskip("av")
    import numpy as np

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            rgb = np.zeros((48, 64, 3), np.uint8)
            rgb[..., 0] = np.arange(64, dtype=np.uint8)[None] * 4
            rgb[..., 1] = 20 * i
            rgb[8:20, 4 * i:4 * i + 12, 2] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture
def clip(tmp_path) -> Path:
    return _encode_clip(tmp_path / "clip.mp4")


def _expected_video(path: Path, preset: str, **sampling):
    """What the library gives for ``path`` with ``preset``'s video config: (decoded video, rows, grid)."""
    vc = VIDEO_PRESETS[preset]
    if not sampling:
        sampling = {"fps": vc.fps}
    video = load_video(path, rule=vc.sizing, min_frames=vc.min_frames, max_frames=vc.max_frames, **sampling)
    return (video, *preprocess_videos(video.frames, PRESETS[preset], vc))


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    safetensors = pytest.importorskip("safetensors.torch")
    with safetensors.safe_open(path, "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def test_preprocess_video_matches_library(clip, tmp_path, capsys):
    out = tmp_path / "v.safetensors"
    assert main(["preprocess", str(clip), "-o", str(out), "--preset", "qwen3-vl", "--no-progress",
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    video, pixel_values, grid = _expected_video(clip, "qwen3-vl")
    tensors, meta = _read_safetensors(out)
    assert set(tensors) == {"pixel_values_videos", "video_grid_thw"}  # no image part without images
    assert torch.equal(tensors["pixel_values_videos"], pixel_values)
    assert torch.equal(tensors["video_grid_thw"], grid)
    (written,) = json.loads(meta["videos"])
    assert written["source"] == str(clip) and written["fps"] == video.metadata.fps == 6.0
    assert written["indices"] == video.metadata.indices and len(written["indices"]) == 4  # 2 s at 2 fps
    assert written["timestamps"] == video.metadata.timestamps
    assert json.loads(meta["files"]) == []
    video_config = json.loads(meta["video_config"])
    assert video_config["sizing"] == "qwen3-vl" and video_config["sampling"]["fps"] == 2.0
    t, gh, gw = grid[0].tolist()
    assert "4 of 12" in printed and f"{t}x{gh}x{gw}" in printed and "pixel_values_videos" in printed


def test_preprocess_mixed_directory_with_a_broken_video(clip, tmp_path, capsys):
    root = tmp_path / "mixed"
    (root / "sub").mkdir(parents=True)
    image = shutil.copy(sample_images()[1], root / "a.jpg")
    video = shutil.move(clip, root / "sub" / "clip.mp4")
    broken = root / "broken.mp4"
    broken.write_bytes(torch.randint(0, 256, (4000,), generator=torch.Generator().manual_seed(0),
                                     dtype=torch.uint8).numpy().tobytes())
    out = tmp_path / "m.safetensors"
    code = main(["preprocess", str(root), "-o", str(out), "--no-progress", "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 1
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {broken}: ")
    assert "1 file(s) failed, 2 processed" in captured.err
    tensors, meta = _read_safetensors(out)
    expected = preprocess(load_image(image), PRESETS["qwen2-vl"])
    assert torch.equal(tensors["pixel_values"], expected.pixel_values)
    assert json.loads(meta["files"]) == [str(image)]
    decoded, pixel_values, grid = _expected_video(Path(video), "qwen2-vl")
    assert decoded.metadata.indices == list(range(12))  # qwen2-vl keeps every frame by default
    assert torch.equal(tensors["pixel_values_videos"], pixel_values)
    assert torch.equal(tensors["video_grid_thw"], grid)
    assert [v["source"] for v in json.loads(meta["videos"])] == [str(video)]

    assert main(["show", str(broken), "-o", str(tmp_path / "b.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {broken}: ") and "\n" not in err
    assert not (tmp_path / "b.png").exists()


def test_preprocess_num_frames(clip, tmp_path, capsys):
    out = tmp_path / "n.safetensors"
    assert main(["preprocess", str(clip), "-o", str(out), "--num-frames", "6", "--preset", "qwen3-vl",
                 "--no-progress", "--device", "cpu", "--dtype", "bfloat16"]) == 0
    assert "6 frames per clip" in capsys.readouterr().out
    tensors, meta = _read_safetensors(out)
    video, pixel_values, grid = _expected_video(clip, "qwen3-vl", num_frames=6)
    expected = preprocess_videos(video.frames, PRESETS["qwen3-vl"].replace(output_dtype=torch.bfloat16),
                                 VIDEO_PRESETS["qwen3-vl"])[0]
    assert tensors["pixel_values_videos"].dtype == torch.bfloat16
    assert torch.equal(tensors["pixel_values_videos"], expected)
    assert torch.equal(tensors["video_grid_thw"], grid) and grid[0, 0] == 3
    (written,) = json.loads(meta["videos"])
    assert written["indices"] == video.metadata.indices and len(written["indices"]) == 6
    assert written["timestamps"] == video.metadata.timestamps
    assert json.loads(meta["video_config"])["sampling"] == {
        "fps": None, "num_frames": 6, "rule": "qwen3-vl", "min_frames": 4, "max_frames": 768,
        "temporal_patch_size": 2}


@pytest.mark.parametrize("argv, message", [
    (["--fps", "1", "--num-frames", "4"], "argument --num-frames: not allowed with argument --fps"),
    (["--fps", "0"], "argument --fps: expected a positive number, got '0'"),
    (["--num-frames", "0"], "argument --num-frames: expected a whole number >= 1, got '0'"),
])
@pytest.mark.parametrize("command", ["preprocess", "show"])
def test_video_sampling_usage_errors(command, argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, *argv])
    assert exc.value.code == 2
    assert capsys.readouterr().err.rstrip().endswith(f"qwen-vis-prep {command}: error: {message}")


def test_show_video_draws_a_strip(clip, tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    drawn = []
    render = cli.render_video_strip

    def keep(*args, **kwargs):
        drawn.append((render(*args, **kwargs), kwargs["title"]))
        return drawn[-1][0]

    monkeypatch.setattr(cli, "render_video_strip", keep)
    out = tmp_path / "strip.png"
    assert main(["show", str(clip), "-o", str(out), "--fps", "6", "--preset", "qwen2-vl"]) == 0
    printed = capsys.readouterr().out
    video, _, grid = _expected_video(clip, "qwen2-vl", fps=6.0)
    assert len(video.metadata.indices) == 12
    chosen = cli.strip_positions(12, 8)
    assert chosen == [0, 2, 3, 5, 6, 8, 9, 11]
    ((fig, title),) = drawn
    assert len(fig.axes) == 8
    assert [ax.get_title() for ax in fig.axes] == [
        f"{video.metadata.timestamps[i]:.2f} s (frame {video.metadata.indices[i]})" for i in chosen]
    t, gh, gw = grid[0].tolist()
    tokens = t * gh * gw // 4
    assert f"grid t*h*w {t}x{gh}x{gw}" in title and f"= {tokens} tokens" in title
    assert printed.startswith(f"wrote {out}: 8 of 12 sampled frames, resized to {gw * 14}x{gh * 14} px")
    assert out.stat().st_size > 0
    with PIL.Image.open(out) as im:
        assert im.mode in ("RGB", "RGBA") and im.width > im.height


def test_missing_video_packages(clip, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "av", None)
    monkeypatch.setitem(sys.modules, "torchcodec", None)
    assert main(["preprocess", str(clip), str(sample_images()[0]), "-o", str(tmp_path / "x.safetensors")]) == 2
    assert capsys.readouterr().err.strip() == (
        "qwen-vis-prep preprocess: error: reading video files needs the 'av' package (PyAV), which is not "
        "installed: pip install 'qwen_vis_prep[video]'")
    assert not (tmp_path / "x.safetensors").exists()
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["show", str(clip), "-o", str(tmp_path / "s.png")]) == 2
    assert "show of a video needs the 'matplotlib' package" in capsys.readouterr().err


def test_image_commands_report_video_files(clip, capsys):
    failures = cli._Failures(lambda m: print(m, file=sys.stderr))
    assert cli._inputs([str(clip), str(sample_images()[0])], failures, "check") == [str(sample_images()[0])]
    assert capsys.readouterr().err.strip() == (f"error: {clip}: a video file; check takes images only "
                                               f"(preprocess and show take videos)")
    assert cli._inputs([str(clip.parent)], failures, "check") == []  # a directory walk skips videos


def test_usage_errors(capsys):
    assert main([]) == 0 and "preprocess" in capsys.readouterr().out
    assert main(["preprocess", "--device", "cuda:7"] if not torch.cuda.is_available() else
                ["preprocess", "--device", "nonsense"]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["preprocess", "--config", "/nonexistent/model"]) == 2
    assert "/nonexistent/model" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["check", "--decoder", "nvjpeg"]) == 2
        assert "--decoder nvjpeg cannot run" in capsys.readouterr().err


def test_console_script_entry_point():
    """``python -m qwen_vis_prep.cli`` (what the qwen-vis-prep script runs) answers --version."""
    result = subprocess.run([sys.executable, "-m", "qwen_vis_prep.cli", "--version"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("qwen-vis-prep ")


def _has(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


# ------------------------------------------------------------------------------------ python -m qwen_vis_prep


def test_python_m_package_help(tmp_path):
    result = _run_module("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: qwen-vis-prep ")
    for command in ("preprocess", "bench", "check", "show"):
        assert command in result.stdout


def test_python_m_package_runs_a_command(tmp_path):
    """A real run through ``python -m qwen_vis_prep``, with a config whose pixel budget is given twice over:
    the warning is one plain line on stderr."""
    config = _config_file(tmp_path, size={"shortest_edge": 3136, "longest_edge": 12845056}, max_pixels=100000)
    out = tmp_path / "patches.png"
    result = _run_module("show", str(sample_images()[1]), "-o", str(out), "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out}: ") and "columns of 14px patches" in result.stdout
    assert result.stderr.splitlines() == [
        f"qwen-vis-prep: warning: {config}: max_pixels=100000 contradicts size['longest_edge']=12845056; "
        f"using max_pixels=100000, as transformers does"]
    with PIL.Image.open(out) as im:
        assert im.mode == "RGB"


# ------------------------------------------------------------------------------------------------ warnings


def test_warnings_print_as_one_plain_line(tmp_path, capsys):
    config = _config_file(tmp_path, size={"shortest_edge": 3136, "longest_edge": 12845056}, max_pixels=100000)
    before = warnings.showwarning, warnings.formatwarning
    assert main(["show", str(sample_images()[1]), "-o", str(tmp_path / "o.png"), "--config", str(config)]) == 0
    assert (warnings.showwarning, warnings.formatwarning) == before  # put back after the run
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"qwen-vis-prep: warning: {config}: max_pixels=100000 contradicts size['longest_edge']=12845056; "
        f"using max_pixels=100000, as transformers does"]
    assert ".py:" not in err and "warnings.warn" not in err and "UserWarning" not in err


def test_warning_format_restored_after_an_error(capsys):
    before = warnings.showwarning, warnings.formatwarning
    assert main(["show", "--config", "/missing"]) == 2
    assert (warnings.showwarning, warnings.formatwarning) == before


# ------------------------------------------------------------------------------------------- --config


@pytest.mark.parametrize("missing", ["/missing", "/tmp/nope.json", "~/no-such-model-dir", "./no/such",
                                     "no/such/model", "not..a/hub-id"])
def test_config_that_does_not_exist(missing, tmp_path, capsys):
    if Path(missing).expanduser().exists():
        pytest.skip(f"{missing} exists on this machine")
    assert main(["show", "--config", missing, "-o", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert err == (f"qwen-vis-prep show: error: {missing}: no such file or directory (expected a model "
                   f"directory, a preprocessor_config.json path or a hub id 'owner/name' in the local Hugging "
                   f"Face cache)\n")
    assert not (tmp_path / "o.png").exists()


def test_unknown_config_key_fails_unless_lenient(tmp_path, capsys):
    config = _config_file(tmp_path, frobnicate_level=3)
    args = ["show", str(sample_images()[1]), "-o", str(tmp_path / "o.png"), "--config", str(config)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"qwen-vis-prep show: error: {config}: unknown key(s) ['frobnicate_level']")
    assert err.rstrip().endswith("Pass --lenient-config to ignore them with a warning")
    assert not (tmp_path / "o.png").exists()

    assert main([*args, "--lenient-config"]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"qwen-vis-prep: warning: {config}: unknown key(s) ['frobnicate_level']")
    assert lines[0].endswith("; ignored (strict=False)")
    assert captured.out.startswith("wrote") and (tmp_path / "o.png").exists()


def test_lenient_config_needs_a_config(capsys):
    assert main(["show", "--lenient-config"]) == 2
    assert capsys.readouterr().err == ("qwen-vis-prep show: error: --lenient-config applies to the file of "
                                       "--config DIR_OR_JSON, and no --config was given\n")


# ---------------------------------------------------------------------------------------------------- help


def _all_parsers(parser: argparse.ArgumentParser, name: str = "qwen-vis-prep"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _all_parsers(sub, f"{name} {sub_name}")


def test_every_option_has_help():
    seen = 0
    for name, parser in _all_parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            seen += 1
            label = "/".join(action.option_strings) or action.dest
            assert isinstance(action.help, str) and action.help.strip(), f"{name}: {label} has no help text"
            assert action.help != argparse.SUPPRESS, f"{name}: {label} is hidden"
    assert seen > 30  # the walk reached the subcommands
