"""``qwen-vis-prep``: preprocess image and video files to safetensors, benchmark against transformers, check
parity, and show what the vision encoder sees. Every subcommand runs on the bundled sample images when given no
path; ``preprocess`` and ``show`` also take video files (:data:`VIDEO_EXTENSIONS`).

Optional packages (``pip install 'qwen_vis_prep[cli]'``): ``tqdm`` (progress bar), ``safetensors``
(``preprocess -o``), ``matplotlib`` (``bench --plot``, ``show`` of a video); ``av`` (PyAV,
``pip install 'qwen_vis_prep[video]'``) for video files; ``transformers`` for ``check`` and the HF rows of
``bench``. A missing one gets a one-line message naming the package.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from . import (PRESETS, VideoConfig, VisionBatch, VisionPreprocessConfig, __version__, load_video, preprocess,
               preprocess_videos, resize)
from .io import (IMAGE_EXTENSIONS, ImageLoadError, expand_paths, load_image, nvjpeg_available, sample_images,
                 try_load_images, unpatchify)
from .presets import default_video_config
from .video_decode import VideoMetadata

PROG = "qwen-vis-prep"
INSTALL_HINT = "pip install 'qwen_vis_prep[cli]'"
#: File extensions ``preprocess`` and ``show`` read as videos (with :func:`qwen_vis_prep.load_video`); every
#: other file is read as an image, animated GIFs included.
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".wmv", ".flv",
                              ".3gp"})


class CliError(Exception):
    """A fatal, user-facing error: printed as one line, exit code 2."""


class _Failures:
    """Per-file problems: printed as they happen (one line each, naming the file) and counted."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.items: list[ImageLoadError] = []
        self.write = write

    def add(self, error: ImageLoadError) -> None:
        self.items.append(error)
        self.write(f"error: {error}")

    def summary(self, done: int) -> None:
        if self.items:
            print(f"{len(self.items)} file(s) failed, {done} processed", file=sys.stderr)


# ------------------------------------------------------------------------------------------- helpers


def _require(module: str, purpose: str) -> Any:
    """Import an optional package or stop with a message that says what to install."""
    try:
        return __import__(module)
    except ImportError:
        extra = INSTALL_HINT if module in ("tqdm", "safetensors", "matplotlib") else f"pip install {module}"
        raise CliError(f"{purpose} needs the '{module}' package, which is not installed: {extra}") from None


def _core_reason(e: Exception) -> str:
    """The core's message without its ``images[i]:`` / ``videos[i]:`` prefix (the CLI names the file instead)."""
    return re.sub(r"^(images|videos)(\[\d+\])?: ", "", str(e))


def _show_error(path: str, e: ValueError) -> int:
    """Print why ``show`` could not read or preprocess ``path``; returns the exit status, 1."""
    message = str(e) if isinstance(e, ImageLoadError) else f"{path}: {_core_reason(e)}"
    print(f"error: {message}", file=sys.stderr)
    return 1


def is_video_path(path: str | os.PathLike) -> bool:
    """Whether the CLI reads ``path`` as a video: its extension is one of :data:`VIDEO_EXTENSIONS`."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CliError(f"unknown device {name!r}; expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CliError(f"--device {name}: CUDA is not available on this machine")
    return device


def _decode_device(args: argparse.Namespace) -> torch.device:
    """``--device`` checked, and ``--decoder nvjpeg`` checked against it."""
    device = _device(args.device)
    if args.decoder == "nvjpeg":
        ok, why = nvjpeg_available(device)
        if not ok:
            raise CliError(f"--decoder nvjpeg cannot run: {why}")
    return device


def _config(args: argparse.Namespace, **fields: Any) -> VisionPreprocessConfig:
    """The config of ``--config`` (a model dir or preprocessor_config.json) or ``--preset``, plus flags."""
    overrides = dict(fields)
    if getattr(args, "min_pixels", None) is not None:
        overrides["min_pixels"] = args.min_pixels
    if getattr(args, "max_pixels", None) is not None:
        overrides["max_pixels"] = args.max_pixels
    lenient = getattr(args, "lenient_config", False)
    if lenient and not getattr(args, "config", None):
        raise CliError("--lenient-config applies to the file of --config DIR_OR_JSON, and no --config was given")
    try:
        if getattr(args, "config", None):
            from .pretrained import config_from_hf

            return config_from_hf(args.config, strict=not lenient, **overrides)
        return VisionPreprocessConfig.from_preset(args.preset, **overrides)
    except (OSError, ValueError, TypeError) as e:
        # config_from_hf names its keyword argument; on the command line it is a flag
        raise CliError(str(e).replace("Pass strict=False", "Pass --lenient-config")) from None


def _inputs(paths: Sequence[str], failures: _Failures, command: str, *, videos: bool = False) -> list[str]:
    """The files to process. Directories are walked recursively (sorted, hidden entries skipped) for image
    extensions, and with ``videos`` for video extensions too; without ``videos`` a video file named on the
    command line is reported as not supported by ``command``."""
    if not paths:
        samples = [str(p) for p in sample_images()]
        print(f"no PATH given: using the {len(samples)} bundled sample images in {Path(samples[0]).parent}",
              file=sys.stderr)
        return samples
    files: list[str] = []
    for given in paths:
        path = Path(given)
        if videos and path.is_dir():
            wanted = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
            found = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in wanted
                           and not any(part.startswith(".") for part in f.relative_to(path).parts))
            files.extend(str(f) for f in found)
            continue
        found_files, errors = expand_paths([given])
        for e in errors:
            failures.add(e)
        for f in found_files:
            if not videos and is_video_path(f):
                failures.add(ImageLoadError(f, f"a video file; {command} takes images only (preprocess and show "
                                               f"take videos)"))
            else:
                files.append(f)
    return files


def _progress(total: int, enabled: bool, desc: str, unit: str = "img"):
    """A tqdm bar on stderr, or a stand-in with the same two methods when tqdm is absent or disabled."""
    if enabled:
        try:
            from tqdm import tqdm

            return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)
        except ImportError:
            print(f"note: no progress bar ('tqdm' is not installed: {INSTALL_HINT})", file=sys.stderr)

    class _Quiet:
        def update(self, n: int = 1) -> None:
            pass

        def close(self) -> None:
            pass

        @staticmethod
        def write(message: str) -> None:
            print(message, file=sys.stderr)

    return _Quiet()


def _table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="qwen2-vl", choices=sorted(PRESETS),
                   help="checkpoint family (default: %(default)s)")
    p.add_argument("--config", metavar="DIR_OR_JSON",
                   help="read the config from a local model directory or preprocessor_config.json instead")
    p.add_argument("--lenient-config", action="store_true",
                   help="with --config: warn about keys qwen_vis_prep does not know and ignore them, instead of "
                        "stopping with an error")
    p.add_argument("--min-pixels", type=int,
                   help="override the pixel budget's lower bound (images; videos keep the preset's video budget)")
    p.add_argument("--max-pixels", type=int,
                   help="override the pixel budget's upper bound (images; videos keep the preset's video budget)")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _add_video_args(p: argparse.ArgumentParser) -> None:
    sampling = p.add_mutually_exclusive_group()
    sampling.add_argument("--fps", type=_positive_float,
                          help="videos: frames per second to sample (default: the preset's video fps, 2 for "
                               "qwen3-vl; qwen2-vl and qwen2.5-vl keep every frame); not with --num-frames")
    sampling.add_argument("--num-frames", type=_positive_int,
                          help="videos: sample this many frames, spread over the clip (qwen2-vl rounds it to a "
                               "multiple of the temporal patch size); not with --fps")
    p.add_argument("--video-decoder", default="auto", choices=["auto", "pyav", "torchcodec"],
                   help="videos: auto (TorchCodec when it is installed and opens the file, else PyAV), pyav or "
                        "torchcodec (default %(default)s)")


# -------------------------------------------------------------------------------------------- videos


@dataclass
class _DoneVideo:
    """One preprocessed video: its decode metadata and its rows of ``pixel_values_videos`` (on the CPU)."""

    name: str
    metadata: VideoMetadata
    pixel_values: torch.Tensor
    grid_thw: torch.Tensor


def _video_config(args: argparse.Namespace, config: VisionPreprocessConfig) -> VideoConfig:
    """The video config of ``--preset``, or of the family of the ``--config`` file."""
    try:
        if getattr(args, "config", None):
            return default_video_config(config)
        return VideoConfig.from_preset(args.preset)
    except ValueError as e:
        raise CliError(str(e)) from None


def _video_kwargs(args: argparse.Namespace, config: VisionPreprocessConfig,
                  video_config: VideoConfig) -> dict[str, Any]:
    """The keyword arguments of ``load_video`` (less ``device``) for the options and the video config."""
    fps = None if args.num_frames is not None else (args.fps if args.fps is not None else video_config.fps)
    return {"fps": fps, "num_frames": args.num_frames, "rule": video_config.sizing,
            "min_frames": video_config.min_frames, "max_frames": video_config.max_frames,
            "temporal_patch_size": config.temporal_patch_size, "decoder": args.video_decoder}


def _sampling_text(kwargs: dict[str, Any]) -> str:
    if kwargs["num_frames"] is not None:
        how = f"{kwargs['num_frames']} frames per clip"
    elif kwargs["fps"] is not None:
        how = f"{kwargs['fps']:g} fps"
    else:
        how = "every frame"
    return f"{how}, {kwargs['rule']} sampling"


def _check_video_decoder(decoder: str) -> None:
    """Stop before any work when no package for ``--video-decoder`` imports."""
    for module in {"pyav": ["av"], "torchcodec": ["torchcodec"], "auto": ["torchcodec", "av"]}[decoder]:
        try:
            __import__(module)
            return
        except Exception:  # noqa: BLE001 - TorchCodec raises RuntimeError/OSError when FFmpeg is missing
            continue
    if decoder == "torchcodec":
        raise CliError("--video-decoder torchcodec needs the 'torchcodec' package, which cannot be imported: "
                       "pip install torchcodec")
    raise CliError("reading video files needs the 'av' package (PyAV), which is not installed: "
                   "pip install 'qwen_vis_prep[video]'")


def _load_video_batch(path: str, device: torch.device, kwargs: dict[str, Any], config: VisionPreprocessConfig,
                      video_config: VideoConfig) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """Decode the sampled frames of ``path`` and preprocess them; ``ImportError`` becomes a ``CliError``."""
    try:
        video = load_video(path, device=device, **kwargs)
    except ImportError as e:
        raise CliError(f"{path}: {e}") from None
    pixel_values, grid_thw = preprocess_videos(video.frames, config, video_config)
    return video, pixel_values, grid_thw


def _preprocess_video(path: str, device: torch.device, kwargs: dict[str, Any], config: VisionPreprocessConfig,
                      video_config: VideoConfig, failures: _Failures) -> _DoneVideo | None:
    """One video decoded and preprocessed, or None when it failed (reported in ``failures``)."""
    try:
        video, pixel_values, grid_thw = _load_video_batch(path, device, kwargs, config, video_config)
    except ImageLoadError as e:
        failures.add(e)
        return None
    except ValueError as e:
        failures.add(ImageLoadError(path, _core_reason(e)))
        return None
    return _DoneVideo(path, video.metadata, pixel_values.cpu(), grid_thw)


# ---------------------------------------------------------------------------------------- preprocess


def _preprocess_chunk(images: list[torch.Tensor], names: list[str], config: VisionPreprocessConfig,
                      failures: _Failures) -> list[tuple[str, torch.Tensor, VisionBatch]]:
    """Preprocess a chunk in one call; if an image is rejected (say, a 300:1 aspect ratio), redo the chunk
    one by one so only that file is reported."""
    try:
        batch = preprocess(images, config)
    except ValueError:
        out = []
        for img, name in zip(images, names):
            try:
                out.append((name, img, preprocess(img, config)))
            except ValueError as e:
                failures.add(ImageLoadError(name, _core_reason(e)))
        return out
    out, start = [], 0
    for k, (img, name) in enumerate(zip(images, names)):
        rows = int(batch.grid_thw[k].prod())
        out.append((name, img, VisionBatch(batch.pixel_values[start:start + rows], batch.grid_thw[k:k + 1])))
        start += rows
    return out


def cmd_preprocess(args: argparse.Namespace) -> int:
    device = _decode_device(args)
    config = _config(args, output_dtype=args.dtype)
    if args.output:
        _require("safetensors", "writing -o/--output")
        if not str(args.output).endswith(".safetensors"):
            print(f"note: {args.output} does not end in .safetensors", file=sys.stderr)
    bar_holder: dict[str, Any] = {}
    failures = _Failures(lambda m: bar_holder["bar"].write(m) if "bar" in bar_holder else print(m, file=sys.stderr))
    inputs = _inputs(args.paths, failures, "preprocess", videos=True)
    files = [f for f in inputs if not is_video_path(f)]
    video_files = [f for f in inputs if is_video_path(f)]
    video_config = _video_config(args, config) if video_files else None
    if video_files:
        _check_video_decoder(args.video_decoder)
    bar = _progress(len(inputs), not args.no_progress, "preprocess", "file" if video_files else "img")
    bar_holder["bar"] = bar
    done: list[tuple[str, torch.Tensor, VisionBatch]] = []
    for start in range(0, len(files), args.batch_size):
        chunk = files[start:start + args.batch_size]
        report = try_load_images(chunk, device, decoder=args.decoder)
        for e in report.errors:
            failures.add(e)
        if report.images:
            for name, img, b in _preprocess_chunk(report.images, report.names, config, failures):
                done.append((name, img, VisionBatch(b.pixel_values.cpu(), b.grid_thw)))
        bar.update(len(chunk))
    videos: list[_DoneVideo] = []
    kwargs: dict[str, Any] = {}
    if video_config is not None:
        kwargs = _video_kwargs(args, config, video_config)
        for path in video_files:
            video = _preprocess_video(path, device, kwargs, config, video_config, failures)
            if video is not None:
                videos.append(video)
            bar.update(1)
    bar.close()

    if done:
        rows = []
        for name, img, b in done:
            t, gh, gw = b.grid_thw[0].tolist()
            rows.append([Path(name).name, f"{img.shape[-1]}x{img.shape[-2]}",
                         f"{gw * config.patch_size}x{gh * config.patch_size}", f"{t}x{gh}x{gw}",
                         gh * gw // config.merge_size ** 2])
        if len(rows) <= args.max_rows:
            print(_table(rows, ["file", "input WxH", "resized WxH", "grid t*h*w", "tokens"]))
        pixel_values = torch.cat([b.pixel_values for _, _, b in done])
        grid_thw = torch.cat([b.grid_thw for _, _, b in done])
        tokens = int(grid_thw.prod(-1).sum()) // config.merge_size ** 2
        print(f"{len(done)} image(s) -> pixel_values {list(pixel_values.shape)} {str(pixel_values.dtype)[6:]}, "
              f"{tokens} LLM tokens ({config.patch_size}px patches, {config.merge_size}x{config.merge_size} "
              f"merge, on {device})")
    if videos:
        _print_videos(videos, config, kwargs, device, args.max_rows)
    if done or videos:
        if args.output:
            images = (pixel_values, grid_thw) if done else None
            _write_safetensors(args.output, done, images, videos, config, video_config, kwargs)
            print(f"wrote {args.output}")
        else:
            saved = "pixel_values, grid_thw" if done else ""
            if videos:
                saved += (", " if saved else "") + "pixel_values_videos, video_grid_thw"
            print(f"(pass -o out.safetensors to save {saved} and the file list)")
    elif args.output:
        print(f"nothing to write: no file could be processed, {args.output} not written", file=sys.stderr)
    failures.summary(len(done) + len(videos))
    return 1 if failures.items or not (done or videos) else 0


def _print_videos(videos: list[_DoneVideo], config: VisionPreprocessConfig, kwargs: dict[str, Any],
                  device: torch.device, max_rows: int) -> None:
    """The per-video table (up to ``max_rows`` videos) and the one-line summary of ``preprocess``."""
    merge = config.merge_size ** 2
    if len(videos) <= max_rows:
        rows = []
        for v in videos:
            t, gh, gw = v.grid_thw[0].tolist()
            m = v.metadata
            rows.append([Path(v.name).name, f"{m.width}x{m.height}", f"{len(m.indices)} of {m.total_frames}",
                         f"{gw * config.patch_size}x{gh * config.patch_size}", f"{t}x{gh}x{gw}",
                         t * gh * gw // merge])
        print(_table(rows, ["video", "input WxH", "frames", "resized WxH", "grid t*h*w", "tokens"]))
    shape = [sum(v.pixel_values.shape[0] for v in videos), videos[0].pixel_values.shape[1]]
    tokens = sum(int(v.grid_thw.prod()) for v in videos) // merge
    frames = sum(len(v.metadata.indices) for v in videos)
    print(f"{len(videos)} video(s), {frames} sampled frames ({_sampling_text(kwargs)}) -> pixel_values_videos "
          f"{shape} {str(videos[0].pixel_values.dtype)[6:]}, {tokens} LLM tokens (on {device})")


def _write_safetensors(path: str, done: list[tuple[str, torch.Tensor, VisionBatch]],
                       images: tuple[torch.Tensor, torch.Tensor] | None, videos: list[_DoneVideo],
                       config: VisionPreprocessConfig, video_config: VideoConfig | None,
                       kwargs: dict[str, Any]) -> None:
    """Images (``images`` = the ``pixel_values`` and ``grid_thw`` of ``done``) as ``pixel_values``,
    ``grid_thw``, ``image_sizes`` with the file list in the ``files`` metadata; videos as
    ``pixel_values_videos``, ``video_grid_thw`` with their decode metadata in ``videos`` and the sizing and
    sampling in ``video_config``. Either part is left out when it has no file."""
    from safetensors.torch import save_file

    from .pretrained import to_hf_dict

    tensors: dict[str, torch.Tensor] = {}
    metadata = {
        "files": json.dumps([name for name, _, _ in done]),
        "config": json.dumps({**to_hf_dict(config), "resize_mode": config.resize_mode,
                              "output_dtype": str(config.output_dtype)[6:]}),
        "format": "qwen_vis_prep",
        "qwen_vis_prep_version": __version__,
    }
    if images is not None:
        tensors["pixel_values"], tensors["grid_thw"] = images[0].contiguous(), images[1].contiguous()
        tensors["image_sizes"] = torch.tensor([[img.shape[-2], img.shape[-1]] for _, img, _ in done],
                                              dtype=torch.int64)
    if videos:
        assert video_config is not None
        tensors["pixel_values_videos"] = torch.cat([v.pixel_values for v in videos]).contiguous()
        tensors["video_grid_thw"] = torch.cat([v.grid_thw for v in videos]).contiguous()
        metadata["videos"] = json.dumps([asdict(v.metadata) for v in videos])
        sampling = {k: kwargs[k] for k in ("fps", "num_frames", "rule", "min_frames", "max_frames",
                                           "temporal_patch_size")}
        metadata["video_config"] = json.dumps({**asdict(video_config), "sampling": sampling})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, path, metadata=metadata)


# ---------------------------------------------------------------------------------------------- bench


def _timed(fn: Callable[[], Any], repeat: int, cuda: bool) -> float:
    """Median seconds of ``fn`` over ``repeat`` runs after one warm-up, the device synced inside the timing."""
    fn()
    times = []
    for _ in range(repeat):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _bench_methods(config: VisionPreprocessConfig, device: torch.device) -> tuple[dict[str, Any], list[str]]:
    """name -> (callable taking (pil_images, cpu_tensors, cuda_tensors), uses_cuda); and notes on skipped rows."""
    methods: dict[str, Any] = {"qwen_vis_prep cpu": (lambda pil, cpu, gpu: preprocess(cpu, config), False)}
    notes = []
    try:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

        from .pretrained import to_hf_dict

        hf_pil = Qwen2VLImageProcessorPil(**to_hf_dict(config))
        hf_tv = Qwen2VLImageProcessor(**to_hf_dict(config))
        methods["HF PIL"] = (lambda pil, cpu, gpu: hf_pil(pil, return_tensors="pt"), False)
        methods["HF torchvision cpu"] = (lambda pil, cpu, gpu: hf_tv(cpu, return_tensors="pt"), False)
    except ImportError:
        hf_tv = None
        notes.append("transformers is not installed: no HF rows (pip install transformers)")
    if device.type == "cuda":
        methods["qwen_vis_prep cuda"] = (lambda pil, cpu, gpu: preprocess(gpu, config), True)
        if hf_tv is not None:
            methods["HF torchvision cuda"] = (lambda pil, cpu, gpu: hf_tv(gpu, return_tensors="pt",
                                                                          device=str(device)), True)
    else:
        notes.append("no CUDA device: no GPU rows")
    return methods, notes


def cmd_bench(args: argparse.Namespace) -> int:
    import numpy as np
    import PIL.Image

    device = _device(args.device)
    config = _config(args)
    if args.plot:
        _require("matplotlib", "bench --plot")
    failures = _Failures(lambda m: print(m, file=sys.stderr))
    files = _inputs(args.paths, failures, "bench")
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([64, 128] if args.quick
                                                                       else [256, 512, 1024, 2048])
    repeat = args.repeat or (2 if args.quick else 5)
    if args.quick:
        files = files[:2]
    report = try_load_images(files)
    for e in report.errors:
        failures.add(e)
    if not report.images:
        raise CliError("no readable image to benchmark")
    methods, notes = _bench_methods(config, device)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    rows, curves = [], {name: [] for name in methods}
    for size in sizes:
        pil, cpu = [], []
        for img in report.images:  # every image scaled so its long side is `size`
            h, w = img.shape[-2:]
            s = size / max(h, w)
            im = PIL.Image.fromarray(img.permute(1, 2, 0).numpy()).resize(
                (max(1, round(w * s)), max(1, round(h * s))), PIL.Image.BICUBIC)
            pil.append(im)
            cpu.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).contiguous())
        gpu = [t.to(device) for t in cpu] if device.type == "cuda" else None
        mpix = sum(t.shape[-1] * t.shape[-2] for t in cpu) / 1e6
        for name, (fn, cuda) in methods.items():
            sec = _timed(lambda: fn(pil, cpu, gpu), repeat, cuda)
            curves[name].append(len(cpu) / sec)
            rows.append([size, name, f"{sec * 1e3:.2f}", f"{len(cpu) / sec:.1f}", f"{mpix / sec:.1f}", sec])
    refs = {r[0]: r[5] for r in rows if r[1] == "HF PIL"}
    for row in rows:  # speed-up against HF's PIL processor, the reference the models were trained with
        row[5] = f"{refs[row[0]] / row[5]:.2f}x" if row[0] in refs else "-"
    print(_machine_line(device))
    print(f"{len(report.images)} image(s) per batch, long side resized to each size, median of {repeat} runs\n")
    print(_table(rows, ["long side", "method", "ms/batch", "img/s", "MPix/s", "vs HF PIL"]))
    if args.plot:
        _plot(args.plot, sizes, curves, device, len(report.images))
        print(f"wrote {args.plot}")
    failures.summary(len(report.images))
    return 1 if failures.items else 0


def _machine_line(device: torch.device) -> str:
    parts = [f"torch {torch.__version__}"]
    for mod in ("torchvision", "transformers", "PIL"):
        try:
            parts.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            pass
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    return f"{where}; " + ", ".join(parts)


def _plot(path: str, sizes: list[int], curves: dict[str, list[float]], device: torch.device, n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, values in curves.items():
        ax.plot(sizes, values, marker="o", label=name, linestyle="-" if "qwen_vis_prep" in name else "--")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("long side of the input image (px)")
    ax.set_ylabel("images / second")
    ax.set_title(f"Qwen-VL preprocessing throughput ({n} images per batch)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.text(0.01, 0.01, _machine_line(device), fontsize=6, alpha=0.7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- check


def cmd_check(args: argparse.Namespace) -> int:
    import PIL.Image
    import PIL.ImageOps

    try:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    except ImportError:
        raise CliError("check compares against transformers' Qwen2VLImageProcessorPil: pip install transformers") \
            from None
    from .pretrained import to_hf_dict

    device = _decode_device(args)
    config = _config(args)
    hf = Qwen2VLImageProcessorPil(**to_hf_dict(config))
    failures = _Failures(lambda m: print(m, file=sys.stderr))
    files = _inputs(args.paths, failures, "check")
    rows, bad = [], 0
    for f in files:
        try:
            ours = preprocess(load_image(f, device, decoder=args.decoder), config)
            with PIL.Image.open(f) as im:
                theirs = hf(PIL.ImageOps.exif_transpose(im), return_tensors="pt")
        except ImageLoadError as e:
            failures.add(e)
            continue
        except (ValueError, OSError) as e:  # HF or the core rejected the image
            failures.add(ImageLoadError(f, _core_reason(e)))
            continue
        same_grid = torch.equal(ours.grid_thw, theirs["image_grid_thw"])
        if same_grid:
            diff = (ours.pixel_values.cpu().double() - theirs["pixel_values"].double()).abs()
            max_diff, n_diff = float(diff.max()), int((diff > args.atol).sum())
        else:
            max_diff, n_diff = float("nan"), -1
        ok = same_grid and max_diff <= args.atol
        bad += not ok
        rows.append([Path(f).name, "x".join(map(str, ours.grid_thw[0].tolist())),
                     "yes" if same_grid else f"NO (HF {theirs['image_grid_thw'][0].tolist()})",
                     f"{max_diff:.3g}", n_diff if n_diff >= 0 else "-", "ok" if ok else "MISMATCH"])
    if rows:
        print(f"qwen_vis_prep ({device}) vs transformers Qwen2VLImageProcessorPil, tolerance {args.atol:g}")
        print(_table(rows, ["file", "grid t*h*w", "grids equal", "max |diff|", "values > tol", "result"]))
        print(f"{len(rows) - bad}/{len(rows)} match")
    failures.summary(len(rows))
    return 1 if (bad or failures.items or not rows) else 0


# ----------------------------------------------------------------------------------------------- show


def render_patches(image: torch.Tensor, config: VisionPreprocessConfig, *, scale: int = 1,
                   title: str | None = None):
    """A PIL image of ``image`` (``[3, h, w]`` uint8, the resized input) with its patch grid in thin lines and
    the merge windows (one LLM token each) in bold, scaled up ``scale`` times, with an optional title bar."""
    import PIL.Image
    import PIL.ImageDraw
    import PIL.ImageFont

    h, w = image.shape[-2:]
    base = PIL.Image.fromarray(image.permute(1, 2, 0).cpu().numpy())
    if scale > 1:
        base = base.resize((w * scale, h * scale), PIL.Image.NEAREST)
    overlay = PIL.Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = PIL.ImageDraw.Draw(overlay)
    p, win = config.patch_size * scale, config.patch_size * config.merge_size * scale
    for x in range(0, base.width + 1, p):
        draw.line([(x, 0), (x, base.height)], fill=(255, 255, 255, 70))
    for y in range(0, base.height + 1, p):
        draw.line([(0, y), (base.width, y)], fill=(255, 255, 255, 70))
    bold = max(1, scale // 2 + 1)
    for x in range(0, base.width + 1, win):
        draw.line([(min(x, base.width - 1), 0), (min(x, base.width - 1), base.height)], fill=(255, 210, 0, 230),
                  width=bold)
    for y in range(0, base.height + 1, win):
        draw.line([(0, min(y, base.height - 1)), (base.width, min(y, base.height - 1))], fill=(255, 210, 0, 230),
                  width=bold)
    out = PIL.Image.alpha_composite(base.convert("RGBA"), overlay).convert("RGB")
    if title:
        try:
            font = PIL.ImageFont.load_default(size=14)
        except TypeError:  # Pillow < 10.1
            font = PIL.ImageFont.load_default()
        lines = title.split("\n")
        bar = 8 + 18 * len(lines)
        text_width = max(PIL.ImageDraw.Draw(out).textlength(line, font=font) for line in lines)
        canvas = PIL.Image.new("RGB", (max(out.width, 520, math.ceil(text_width) + 12), out.height + bar),
                               (24, 24, 24))
        canvas.paste(out, (0, bar))
        d = PIL.ImageDraw.Draw(canvas)
        for i, line in enumerate(lines):
            d.text((6, 4 + 18 * i), line, fill=(235, 235, 235), font=font)
        out = canvas
    return out


def cmd_show(args: argparse.Namespace) -> int:
    device = _decode_device(args)
    config = _config(args)
    path = args.path or str(next(p for p in sample_images() if p.name.startswith("chelsea")))
    if not args.path:
        print(f"no PATH given: showing the bundled sample {Path(path).name}", file=sys.stderr)
    output = args.output or f"{Path(path).stem}_patches.png"
    if is_video_path(path):
        return _show_video(args, path, output, device, config)
    try:
        img = load_image(path, device, decoder=args.decoder)
        batch = preprocess(img, config)
    except ValueError as e:  # ImageLoadError too: it names the file itself
        return _show_error(path, e)
    recon = unpatchify(batch.pixel_values.float(), batch.grid_thw, config)
    _, gh, gw = batch.grid_thw[0].tolist()
    h, w = recon.shape[-2:]
    scale = args.scale or max(1, min(4, math.ceil(640 / max(h, w))))
    tokens = gh * gw // config.merge_size ** 2
    grid = _patch_grid_text(gh, gw, config.patch_size)
    title = (f"{Path(path).name}: {img.shape[-1]}x{img.shape[-2]} -> {w}x{h} px, width x height "
             f"({config.resize_mode} resize)\n"
             f"{grid}, {config.merge_size}x{config.merge_size} merge windows (yellow) = {tokens} tokens")
    render_patches(recon, config, scale=scale, title=title).save(output)
    print(f"wrote {output}: {w}x{h} px (width x height) resized image, {grid} ({gh * gw} in all), "
          f"{tokens} tokens, drawn at {scale}x")
    return 0


def strip_positions(count: int, limit: int) -> list[int]:
    """Up to ``limit`` positions out of ``range(count)``, evenly spread, first and last included."""
    if count <= limit:
        return list(range(count))
    if limit == 1:
        return [0]
    return [round(i * (count - 1) / (limit - 1)) for i in range(limit)]


def render_video_strip(frames: torch.Tensor, times: Sequence[float], indices: Sequence[int],
                       config: VisionPreprocessConfig, *, scale: int = 1, title: str = ""):
    """A matplotlib ``Figure`` (Agg canvas) with one axes per frame of ``frames`` (``[n, 3, h, w]`` uint8, the
    resized frames) in a row, each drawn by :func:`render_patches` and titled with its time in seconds and
    its frame index in the video, under ``title``."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(frames)
    h, w = frames.shape[-2:]
    panel = 2.6  # inches per frame
    fig = Figure(figsize=(max(panel * n, 6.0), panel * h / w + 1.2), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, frame, t, idx in zip(axes, frames, times, indices):
        ax.imshow(np.asarray(render_patches(frame, config, scale=scale)))
        ax.set_title(f"{t:.2f} s (frame {idx})", fontsize=8)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return fig


def _show_video(args: argparse.Namespace, path: str, output: str, device: torch.device,
                config: VisionPreprocessConfig) -> int:
    """``show`` of a video: a strip of up to ``--strip-frames`` of the sampled frames, resized as the model
    sees them (the video config's resize mode) with patches and merge windows, saved as ``output``."""
    _require("matplotlib", "show of a video")
    _check_video_decoder(args.video_decoder)
    video_config = _video_config(args, config)
    kwargs = _video_kwargs(args, config, video_config)
    try:
        video, _, grid_thw = _load_video_batch(path, device, kwargs, config, video_config)
    except ValueError as e:  # ImageLoadError too: it names the file itself
        return _show_error(path, e)
    m = video.metadata
    t, gh, gw = grid_thw[0].tolist()
    h, w = gh * config.patch_size, gw * config.patch_size
    chosen = strip_positions(len(m.indices), args.strip_frames)
    frames = resize(video.frames[chosen].cpu(), (h, w), mode=video_config.resize_mode)
    scale = args.scale or max(1, min(4, math.ceil(240 / max(h, w))))
    tokens = t * gh * gw // config.merge_size ** 2
    title = (f"{Path(path).name}: {m.width}x{m.height} px, {m.total_frames} frames at {m.fps:.3g} fps; "
             f"{len(m.indices)} sampled ({_sampling_text(kwargs)}), resized to {w}x{h} "
             f"({video_config.resize_mode}); {len(chosen)} drawn\n"
             f"grid t*h*w {t}x{gh}x{gw} ({config.temporal_patch_size} frames per temporal patch, "
             f"{config.merge_size}x{config.merge_size} merge windows in yellow) = {tokens} tokens")
    fig = render_video_strip(frames, [m.timestamps[i] for i in chosen], [m.indices[i] for i in chosen], config,
                             scale=scale, title=title)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output)
    print(f"wrote {output}: {len(chosen)} of {len(m.indices)} sampled frames, resized to {w}x{h} px "
          f"(width x height), grid {t}x{gh}x{gw} (t x rows x columns), {tokens} tokens, drawn at {scale}x")
    return 0


def _patch_grid_text(rows: int, columns: int, patch_size: int) -> str:
    """How ``show`` names a patch grid, in its printed line and in the picture's title."""
    return f"{rows} rows x {columns} columns of {patch_size}px patches"


# ----------------------------------------------------------------------------------------------- main


def _add_decoder_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--decoder", default="auto", choices=["auto", "nvjpeg", "cpu"],
                   help="JPEG decoder on a CUDA device: auto (nvJPEG when it runs), nvjpeg, or cpu "
                        "(libjpeg-turbo, Pillow-exact pixels)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Pillow-exact Qwen-VL image preprocessing. "
                                     "Every command uses the bundled sample images when given no path.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", help="what to do (COMMAND -h for its options)")

    p = sub.add_parser("preprocess", help="image and video files/directories -> pixel_values + grid_thw, "
                                          "pixel_values_videos + video_grid_thw (safetensors)")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="image or video files, or directories (searched recursively for both)")
    p.add_argument("-o", "--output", help="write pixel_values, grid_thw, image_sizes and the file list here; for "
                                          "videos pixel_values_videos, video_grid_thw and their frame metadata")
    _add_config_args(p)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="dtype of the written pixel_values and pixel_values_videos (default %(default)s)")
    _add_decoder_arg(p)
    _add_video_args(p)
    p.add_argument("--batch-size", type=int, default=16,
                   help="images decoded and preprocessed per step (videos go one at a time)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--max-rows", type=int, default=25, help="print the per-file table up to this many files")
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("bench", help="throughput of qwen_vis_prep vs transformers on this machine")
    p.add_argument("paths", nargs="*", metavar="PATH", help="images to time (default: bundled samples)")
    _add_config_args(p)
    p.add_argument("--device", default="auto", help="where the GPU rows run (auto: CUDA when present)")
    p.add_argument("--sizes", help="comma-separated long sides to scale the images to (default 256,512,1024,2048)")
    p.add_argument("--repeat", type=int, help="timed runs per cell, median reported (default 5; 2 with --quick)")
    p.add_argument("--quick", action="store_true", help="two small images at 64 and 128 px: a smoke test")
    p.add_argument("--plot", metavar="PNG", help="draw throughput vs image size (needs matplotlib)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("check", help="parity report against transformers' PIL image processor")
    p.add_argument("paths", nargs="*", metavar="PATH", help="image files or directories")
    _add_config_args(p)
    p.add_argument("--device", default="cpu", help="where qwen_vis_prep decodes and runs (default cpu)")
    _add_decoder_arg(p)
    p.add_argument("--atol", type=float, default=1e-6,
                   help="largest accepted |difference| of pixel_values (default %(default)s: float32 rounding of "
                        "the normalisation)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("show", help="draw what the encoder sees: the resized image (or a strip of a video's "
                                    "sampled frames) with patches and merge windows")
    p.add_argument("path", nargs="?", metavar="PATH", help="an image or video file (default: a bundled sample)")
    p.add_argument("-o", "--output", help="PNG to write (default: <name>_patches.png here)")
    _add_config_args(p)
    p.add_argument("--device", default="cpu", help="where to decode and preprocess (default cpu)")
    _add_decoder_arg(p)
    _add_video_args(p)
    p.add_argument("--scale", type=int, help="integer zoom of the drawing (default: up to 640 px, at most 4x; "
                                             "for a video's frames up to 240 px)")
    p.add_argument("--strip-frames", type=_positive_int, default=8,
                   help="videos: draw this many of the sampled frames, evenly spread, each resized as the model "
                        "sees it and titled with its time in seconds (default %(default)s; needs matplotlib)")
    p.set_defaults(func=cmd_show)
    return parser


def _format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    line: str | None = None) -> str:
    """A warning as one ``qwen-vis-prep: warning: <message>`` line: no file, line number or source line."""
    return f"{PROG}: warning: {message}\n"


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    stream = sys.stderr if file is None else file
    if stream is None:  # pythonw: no stderr
        return
    try:
        stream.write(_format_warning(message, category, filename, lineno, line))
    except OSError:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``qwen-vis-prep``; returns the exit code (0 ok, 1 some file failed, 2 usage error).

    While it runs, warnings print as ``qwen-vis-prep: warning: <message>`` on stderr; the previous
    ``warnings.showwarning`` and ``warnings.formatwarning`` are back in place when it returns.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    saved_format = warnings.formatwarning
    with warnings.catch_warnings():  # restores showwarning and the filters on the way out
        warnings.showwarning = _show_warning
        warnings.formatwarning = _format_warning
        try:
            return args.func(args)
        except CliError as e:
            print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        finally:
            warnings.formatwarning = saved_format


if __name__ == "__main__":
    sys.exit(main())
