"""Images in and out: encoded files or bytes -> ``[3, H, W]`` uint8 tensors (JPEGs batch-decoded on the GPU with
nvJPEG), and ``pixel_values`` -> the resized image again (:func:`unpatchify`).

Decoding matches what the core path does with ``PIL.Image.open(f)``: grayscale is replicated to RGB,
transparency is composited onto white (Pillow's ``alpha_composite``), and the EXIF orientation is applied
like ``PIL.ImageOps.exif_transpose`` (which transformers' ``load_image`` also applies). JPEGs decoded on the
CPU are bit-identical to Pillow's decode (both use libjpeg-turbo's default integer IDCT and fancy
upsampling); nvJPEG on the GPU is not (see ``docs/ecosystem.md`` for the measured difference).

Decoding untrusted files is bounded by one pixel limit: the size a file *declares* (JPEG frame header,
or the header Pillow reads in ``PIL.Image.open``) is checked before any decoder allocates the image, on every
path (nvJPEG, libjpeg-turbo, Pillow). A file declaring more than the limit fails with :class:`ImageLoadError`.

* default: ``PIL.Image.MAX_IMAGE_PIXELS`` as it is when this module is imported (89 478 485 pixels unless
  changed, about 256 MiB as RGB uint8);
* environment variable ``QWEN_VIS_PREP_MAX_IMAGE_PIXELS`` (read at import): a whole number of pixels, or
  ``0`` / ``none`` for no limit;
* at run time: :func:`set_max_image_pixels` (``None`` or ``0`` for no limit), read with
  :func:`max_image_pixels`; :func:`check_pixel_count` applies it to other decoders (each video frame).

While Pillow decodes for this module, Pillow's own check (``PIL.Image.MAX_IMAGE_PIXELS``, which raises only
above twice its value and warns above it) is set to the same limit, so a limit raised above Pillow's default
lets Pillow decode too.

Single-channel images with more than 8 bits per sample (Pillow modes ``I;16``, ``I``, ``F``: 16-bit
grayscale PNG or TIFF, for instance) are reduced to 8 bits as ``PIL.Image.convert("RGB")`` does, by clipping
to 0..255, not by rescaling; each such file gets a ``UserWarning`` naming it. (Pillow itself reads 16-bit
RGB(A) PNGs as 8-bit ``RGB``/``RGBA``, keeping the high byte; those are not warned about.)
"""

from __future__ import annotations

import contextlib
import io as _io
import os
import re
import struct
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Sequence, Union

import PIL.Image
import torch

from . import layout
from .checks import pil_to_hwc
from .config import VisionPreprocessConfig

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview]
Decoder = Literal["auto", "nvjpeg", "cpu"]

SAMPLES_DIR = Path(__file__).resolve().parent / "data"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff",
                              ".ppm", ".pgm", ".pbm", ".pnm"})

_JPEG_MAGIC = b"\xff\xd8\xff"
# Start-of-frame markers; nvJPEG handles the 8-bit Huffman ones (baseline, extended, progressive).
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_NVJPEG_SOF = frozenset({0xC0, 0xC1, 0xC2})


class ImageLoadError(ValueError):
    """One input could not be read or decoded; ``source`` is its name, ``reason`` what went wrong."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


# ----------------------------------------------------------------------------------------------- pixel limit

MAX_PIXELS_ENV = "QWEN_VIS_PREP_MAX_IMAGE_PIXELS"
_LIMIT_HINT = f"qwen_vis_prep.io.set_max_image_pixels / {MAX_PIXELS_ENV}"
# Pillow's limit when this module is imported: the default of ours.
_PILLOW_DEFAULT: int | None = PIL.Image.MAX_IMAGE_PIXELS


def _limit_from_env() -> int | None:
    """The limit that ``QWEN_VIS_PREP_MAX_IMAGE_PIXELS`` asks for (Pillow's at import when it is unset)."""
    raw = os.environ.get(MAX_PIXELS_ENV)
    if raw is None or raw.strip() == "":
        return _PILLOW_DEFAULT
    text = raw.strip().lower()
    if text == "none":
        return None
    try:
        limit = int(text)
    except ValueError:
        raise ValueError(f"{MAX_PIXELS_ENV} must be a whole number of pixels >= 0, or 'none', got {raw!r}"
                         ) from None
    if limit < 0:
        raise ValueError(f"{MAX_PIXELS_ENV} must be a whole number of pixels >= 0, or 'none', got {raw!r}")
    return limit or None


_max_pixels: int | None = _limit_from_env()


def max_image_pixels() -> int | None:
    """The most pixels (width * height, times frames for a video) a file may declare; ``None``: no limit."""
    return _max_pixels


def set_max_image_pixels(limit: int | None) -> int | None:
    """Set the pixel limit for every decoder of this module, from now on; returns the previous one.

    ``limit`` is a whole number of pixels; ``None`` or ``0`` removes the limit. It overrides
    ``QWEN_VIS_PREP_MAX_IMAGE_PIXELS``. A limit above Pillow's ``PIL.Image.MAX_IMAGE_PIXELS`` also lets
    Pillow decode such files here (Pillow's own check follows this limit while it decodes for this module).
    """
    global _max_pixels
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"set_max_image_pixels expects an int number of pixels or None, "
                            f"got {type(limit).__name__}")
        if limit < 0:
            raise ValueError(f"set_max_image_pixels expects a number of pixels >= 0 or None, got {limit}")
    previous, _max_pixels = _max_pixels, (limit or None)
    return previous


def check_pixel_count(name: str, height: int, width: int) -> None:
    """Raise :class:`ImageLoadError` for ``name`` if one ``height x width`` image or video frame exceeds
    :func:`max_image_pixels`.

    Call it with the *declared* size, before decoding allocates anything. Video decoders check each frame
    size like one image, as Pillow bounds one image; how many frames a clip holds is the sampling's bound
    (``max_frames``).
    """
    _check_pixels(name, height, width, _max_pixels)


def _check_pixels(name: str, height: int, width: int, limit: int | None) -> None:
    if limit is None:
        return
    count = height * width
    if count > limit:
        raise ImageLoadError(name, f"declares {width}x{height} = {count} pixels, more than the limit of {limit} "
                                   f"({_LIMIT_HINT})")


def _bomb_reason(e: Exception, limit: int | None) -> str:
    """The reason for a file that Pillow's own check refused (Pillow does not say the width and height)."""
    found = re.search(r"\((\d+) pixels\)", str(e))
    if limit is None or found is None:
        return f"refused by Pillow's decompression bomb check: {e}"
    return f"declares {found.group(1)} pixels, more than the limit of {limit} ({_LIMIT_HINT})"


class _PillowLimit:
    """Sets Pillow's global ``MAX_IMAGE_PIXELS`` to this module's limit while Pillow decodes for it.

    Reference-counted under a lock: the first decode that needs another value saves Pillow's, the last
    decode to finish restores it; nothing is written while the two limits agree (the default). Code that uses
    Pillow directly in other threads meanwhile sees this module's limit.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved: int | None = None
        self._pinned = False

    @contextlib.contextmanager
    def __call__(self, limit: int | None) -> Iterator[None]:
        with self._lock:
            if PIL.Image.MAX_IMAGE_PIXELS != limit:
                if not self._pinned:
                    self._saved, self._pinned = PIL.Image.MAX_IMAGE_PIXELS, True
                PIL.Image.MAX_IMAGE_PIXELS = limit
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._pinned:
                    PIL.Image.MAX_IMAGE_PIXELS, self._pinned = self._saved, False


_pillow_limit = _PillowLimit()


@dataclass
class LoadReport:
    """What :func:`try_load_images` managed: ``images[k]`` came from input ``indices[k]`` (named
    ``names[k]``); every input that failed has one :class:`ImageLoadError` in ``errors``."""

    images: list[torch.Tensor] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    errors: list[ImageLoadError] = field(default_factory=list)


@dataclass
class _JpegInfo:
    sof: int
    precision: int
    height: int
    width: int
    components: int
    orientation: int


def sample_images() -> list[Path]:
    """The bundled sample images (``qwen_vis_prep/data``): RGB JPEGs, an RGBA PNG and a grayscale PNG."""
    return sorted(p for p in SAMPLES_DIR.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def expand_paths(paths: Iterable[str | os.PathLike], *, recursive: bool = True
                 ) -> tuple[list[str], list[ImageLoadError]]:
    """Files to load from ``paths``: files as given (whatever their extension, so an unsupported one is
    reported when it is read), directories walked (recursively by default) for image extensions in sorted
    order, hidden entries skipped. Paths that do not exist come back as errors."""
    files: list[str] = []
    errors: list[ImageLoadError] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            walker = path.rglob("*") if recursive else path.glob("*")
            found = sorted(f for f in walker if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
                           and not any(part.startswith(".") for part in f.relative_to(path).parts))
            files.extend(str(f) for f in found)
        elif path.exists():
            files.append(str(path))
        else:
            errors.append(ImageLoadError(str(p), "no such file or directory"))
    return files, errors


def load_image(source: ImageSource, device: torch.device | str | None = None, *,
               apply_exif_orientation: bool = True, decoder: Decoder = "auto") -> torch.Tensor:
    """One image as ``[3, H, W]`` uint8 on ``device``; see :func:`load_images`."""
    return load_images([source], device, apply_exif_orientation=apply_exif_orientation, decoder=decoder)[0]


def load_images(sources: ImageSource | Sequence[ImageSource], device: torch.device | str | None = None, *,
                apply_exif_orientation: bool = True, decoder: Decoder = "auto") -> list[torch.Tensor]:
    """Decode files or encoded bytes into RGB ``[3, H, W]`` uint8 tensors on ``device`` (default CPU).

    JPEGs go through torchvision's decoder: nvJPEG, batched, when ``device`` is CUDA and ``decoder`` is
    ``"auto"`` or ``"nvjpeg"``; libjpeg-turbo on the CPU otherwise (``decoder="cpu"`` keeps the decode
    Pillow-exact and moves the result). Other formats, and 12-bit/CMYK/arithmetic JPEGs, are decoded by
    Pillow. ``"nvjpeg"`` raises when nvJPEG cannot run; ``"auto"`` falls back to the CPU quietly.
    Raises :class:`ImageLoadError` naming the first input that fails (:func:`try_load_images` goes on).
    """
    report = try_load_images(sources, device, apply_exif_orientation=apply_exif_orientation, decoder=decoder)
    if report.errors:
        more = f" (and {len(report.errors) - 1} more)" if len(report.errors) > 1 else ""
        first = report.errors[0]
        raise ImageLoadError(first.source, first.reason + more)
    return report.images


def try_load_images(sources: ImageSource | Sequence[ImageSource], device: torch.device | str | None = None, *,
                    apply_exif_orientation: bool = True, decoder: Decoder = "auto") -> LoadReport:
    """:func:`load_images` that keeps going: the readable inputs are decoded, the others reported."""
    if decoder not in ("auto", "nvjpeg", "cpu"):
        raise ValueError(f"decoder must be 'auto', 'nvjpeg' or 'cpu', got {decoder!r}")
    if isinstance(sources, (str, os.PathLike, bytes, bytearray, memoryview)):
        sources = [sources]
    sources = list(sources)
    device = torch.device(device) if device is not None else torch.device("cpu")
    use_nvjpeg = False
    if decoder == "nvjpeg" or (decoder == "auto" and device.type == "cuda"):
        use_nvjpeg, why = nvjpeg_available(device)
        if decoder == "nvjpeg" and not use_nvjpeg:
            raise ValueError(f"decoder='nvjpeg' cannot run: {why}")

    names = [_name(s, i) for i, s in enumerate(sources)]
    results: list[torch.Tensor | ImageLoadError | None] = [None] * len(sources)
    blobs: list[bytes | None] = [None] * len(sources)
    for i, s in enumerate(sources):
        try:
            blobs[i] = _read(s, names[i])
        except ImageLoadError as e:
            results[i] = e

    gpu_jobs: list[tuple[int, _JpegInfo]] = []
    cpu_jobs: list[int] = []
    for i, blob in enumerate(blobs):
        if blob is None:
            continue
        info = _jpeg_info(blob) if blob.startswith(_JPEG_MAGIC) else None
        if info is not None:  # bounded before either JPEG decoder allocates (Pillow's path checks its own)
            try:
                check_pixel_count(names[i], info.height, info.width)
            except ImageLoadError as e:
                results[i] = e
                continue
        # nvJPEG may decode a truncated stream without complaint: files that do not end in EOI go to the
        # CPU decoder, which reports them (or decodes them as Pillow would).
        if use_nvjpeg and info is not None and info.sof in _NVJPEG_SOF and info.precision == 8 \
                and info.components in (1, 3) and blob.rstrip(b"\x00")[-2:] == b"\xff\xd9":
            gpu_jobs.append((i, info))
        else:
            cpu_jobs.append(i)

    if gpu_jobs:
        failed = _decode_nvjpeg(gpu_jobs, blobs, results, device, apply_exif_orientation)
        cpu_jobs.extend(failed)

    def cpu_work(i: int) -> None:
        try:
            img = _decode_cpu(blobs[i], names[i], apply_exif_orientation)
            results[i] = img.to(device) if device.type != "cpu" else img
        except ImageLoadError as e:
            results[i] = e

    if len(cpu_jobs) > 1:
        with ThreadPoolExecutor(max_workers=min(len(cpu_jobs), max(1, torch.get_num_threads()))) as pool:
            list(pool.map(cpu_work, sorted(cpu_jobs)))
    else:
        for i in cpu_jobs:
            cpu_work(i)

    report = LoadReport()
    for i, r in enumerate(results):
        if isinstance(r, ImageLoadError):
            report.errors.append(r)
        else:
            report.images.append(r)
            report.names.append(names[i])
            report.indices.append(i)
    return report


def unpatchify(pixel_values: torch.Tensor, grid_thw: torch.Tensor, config: VisionPreprocessConfig,
               index: int = 0) -> torch.Tensor:
    """Image ``index`` of a batch back from its patches: ``[3, h, w]`` uint8 (``[frames, 3, h, w]`` for a
    video grid with ``t > 1``), de-normalised with ``config`` and rounded to the nearest level.

    The inverse of patchify + normalise: for float32 ``pixel_values`` of an exact resize mode this is
    exactly the resized image (the float round trip errs by far less than half a level); bfloat16/float16
    outputs come back within a level or so.
    """
    grid = torch.as_tensor(grid_thw).reshape(-1, 3).tolist()
    if not 0 <= index < len(grid):
        raise IndexError(f"index {index} out of range for {len(grid)} image(s)")
    counts = [t * h * w for t, h, w in grid]
    start = sum(counts[:index])
    if pixel_values.shape[0] != sum(counts):
        raise ValueError(f"pixel_values has {pixel_values.shape[0]} rows, grid_thw {grid} needs {sum(counts)}")
    t, gh, gw = grid[index]
    p = config.patch_size
    frames = pixel_values.shape[1] // (3 * p * p)
    if pixel_values.shape[1] != 3 * frames * p * p or frames not in (1, config.temporal_patch_size):
        raise ValueError(f"pixel_values has {pixel_values.shape[1]} columns; with patch_size={p} expected "
                         f"{3 * p * p} (compact) or {3 * config.temporal_patch_size * p * p}")
    rows = pixel_values[start:start + counts[index]].to(torch.float64)
    x = layout.unpatchify(rows, (t, gh, gw), p, config.row_merge_size)
    if config.do_normalize:
        std = torch.tensor(config.image_std, dtype=torch.float64, device=x.device).view(1, 3, 1, 1)
        mean = torch.tensor(config.image_mean, dtype=torch.float64, device=x.device).view(1, 3, 1, 1)
        x = x * std + mean
    if config.do_rescale:
        x = x / config.rescale_factor
    out = x.round().clamp(0, 255).to(torch.uint8)
    return out[0] if t == 1 else out


# ----------------------------------------------------------------------------------------------- helpers


def _name(source: Any, i: int) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"<bytes #{i}>"


def _read(source: Any, name: str) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise ImageLoadError(name, "no such file") from None
        except IsADirectoryError:
            raise ImageLoadError(name, "is a directory, not an image file") from None
        except PermissionError:
            raise ImageLoadError(name, "permission denied") from None
        except OSError as e:
            raise ImageLoadError(name, f"cannot read ({e.strerror or e})") from None
    else:
        raise ImageLoadError(name, f"expected a path or encoded bytes, got {type(source).__name__}")
    if not data:
        raise ImageLoadError(name, "empty file")
    return data


def _jpeg_info(data: bytes) -> _JpegInfo | None:
    """Frame type, size, components and EXIF orientation from a JPEG's headers (None if malformed)."""
    i, n = 2, len(data)
    orientation = 1
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        segment = data[i + 4:i + 2 + length]
        if marker == 0xE1 and segment.startswith(b"Exif\x00\x00") and orientation == 1:
            orientation = _exif_orientation(segment[6:])
        if marker in _SOF_MARKERS and len(segment) >= 6:
            precision = segment[0]
            height, width = struct.unpack(">HH", segment[1:5])
            return _JpegInfo(marker, precision, height, width, segment[5], orientation)
        if marker == 0xDA:
            return None
        i += 2 + length
    return None


def _exif_orientation(tiff: bytes) -> int:
    """The Orientation tag (0x0112) of IFD0 in a TIFF-structured EXIF block; 1 when absent or unreadable."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    endian = "<" if tiff[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack(endian + "I", tiff[4:8])
        (count,) = struct.unpack(endian + "H", tiff[ifd:ifd + 2])
        for k in range(count):
            entry = tiff[ifd + 2 + 12 * k: ifd + 14 + 12 * k]
            tag, kind = struct.unpack(endian + "HH", entry[:4])
            if tag == 0x0112 and kind == 3:
                (value,) = struct.unpack(endian + "H", entry[8:10])
                return value if 1 <= value <= 8 else 1
    except struct.error:
        return 1
    return 1


def _orient(img: torch.Tensor, orientation: int) -> torch.Tensor:
    """``[C, H, W]`` turned upright for an EXIF orientation, as ``PIL.ImageOps.exif_transpose`` does."""
    if orientation == 2:
        return img.flip(-1)
    if orientation == 3:
        return img.flip(-1, -2)
    if orientation == 4:
        return img.flip(-2)
    if orientation == 5:
        return img.transpose(-1, -2).contiguous()
    if orientation == 6:
        return torch.rot90(img, -1, (-2, -1)).contiguous()
    if orientation == 7:
        return img.transpose(-1, -2).flip(-1, -2)
    if orientation == 8:
        return torch.rot90(img, 1, (-2, -1)).contiguous()
    return img


def _torchvision_decode_jpeg(data: Any, device: torch.device | str = "cpu") -> Any:
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        # torchvision 0.29 marks its decoders deprecated in favour of TorchCodec; they still work.
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


def _clean_error(e: Exception) -> str:
    """torchvision's messages start with the C++ source location; keep what a user can act on."""
    return str(e).rsplit(", ", 1)[-1].strip() or type(e).__name__


def _bytes_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _decode_nvjpeg(jobs: list[tuple[int, _JpegInfo]], blobs: list[bytes | None], results: list,
                   device: torch.device, exif: bool) -> list[int]:
    """Batch-decode ``jobs`` on the GPU into ``results``; returns the indices to retry on the CPU (where a
    corrupt file gets its error message)."""
    tensors = [_bytes_tensor(blobs[i]) for i, _ in jobs]
    try:
        decoded = _torchvision_decode_jpeg(tensors, device)
    except RuntimeError:  # one bad file fails the whole batch: decode one by one to keep the others
        decoded = []
        for t in tensors:
            try:
                decoded.append(_torchvision_decode_jpeg(t, device))
            except RuntimeError:
                decoded.append(None)
    retry = []
    for (i, info), img in zip(jobs, decoded):
        if img is None:
            retry.append(i)
        else:
            results[i] = _orient(img, info.orientation) if exif else img
    return retry


_NVJPEG_OK: dict[str, tuple[bool, str]] = {}


def nvjpeg_available(device: torch.device | str = "cuda") -> tuple[bool, str]:
    """Whether torchvision's nvJPEG decoder runs on ``device`` (tried once per device), and why not."""
    device = torch.device(device)
    key = str(device)
    if key not in _NVJPEG_OK:
        if device.type != "cuda" or not torch.cuda.is_available():
            _NVJPEG_OK[key] = (False, f"{device} is not an available CUDA device")
        else:
            buf = _io.BytesIO()
            PIL.Image.new("RGB", (16, 16), (10, 200, 30)).save(buf, "JPEG")
            try:
                _torchvision_decode_jpeg([_bytes_tensor(buf.getvalue())], device)
                _NVJPEG_OK[key] = (True, "")
            except RuntimeError as e:
                _NVJPEG_OK[key] = (False, _clean_error(e))
    return _NVJPEG_OK[key]


def _decode_cpu(data: bytes, name: str, exif: bool) -> torch.Tensor:
    """libjpeg-turbo for JPEGs that torchvision reads, Pillow for everything else (and as the fallback)."""
    if data.startswith(_JPEG_MAGIC):
        info = _jpeg_info(data)
        if info is not None:
            check_pixel_count(name, info.height, info.width)
        if info is not None and info.precision == 8 and info.components in (1, 3):
            try:
                img = _torchvision_decode_jpeg(_bytes_tensor(data))
                return _orient(img, info.orientation) if exif else img
            except RuntimeError as e:
                jpeg_error = _clean_error(e)
        else:
            jpeg_error = None
        try:
            return _decode_pillow(data, name, exif)
        except ImageLoadError:
            raise
        except Exception as e:  # Pillow's decoders raise OSError, ValueError, SyntaxError ...
            raise ImageLoadError(name, f"corrupt or unsupported JPEG: {jpeg_error or e}") from None
    try:
        return _decode_pillow(data, name, exif)
    except ImageLoadError:
        raise
    except Exception as e:
        raise ImageLoadError(name, _pillow_reason(e)) from None


# Modes with more than 8 bits per sample; PIL's convert("RGB") clips them to 0..255.
_WIDE_MODES = {"I;16": "16-bit", "I;16L": "16-bit", "I;16B": "16-bit", "I;16N": "16-bit", "I": "32-bit integer",
               "F": "32-bit float"}


def _decode_pillow(data: bytes, name: str, exif: bool) -> torch.Tensor:
    """Pillow's decode, refused by the declared size before ``load()`` allocates the pixels."""
    import PIL.ImageOps

    limit = _max_pixels
    with _pillow_limit(limit):
        try:
            with PIL.Image.open(_io.BytesIO(data)) as img:  # reads the header only
                width, height = img.size
                _check_pixels(name, height, width, limit)
                img.load()
                if exif:
                    img = PIL.ImageOps.exif_transpose(img)
                mode = img.mode
                out = pil_to_hwc(img).permute(2, 0, 1).contiguous()
        except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning) as e:
            # Pillow's check inside open() (above twice the limit) or a plugin's (frames, tiles)
            raise ImageLoadError(name, _bomb_reason(e, limit)) from None
    if mode in _WIDE_MODES:
        warnings.warn(f"{name}: expected 8 bits per sample, got mode {mode!r} ({_WIDE_MODES[mode]}); reduced to "
                      f"8 bits by clipping to 0..255 (not rescaled), as PIL's convert('RGB') does", UserWarning,
                      stacklevel=2)
    return out


def _pillow_reason(e: Exception) -> str:
    import PIL

    if isinstance(e, PIL.UnidentifiedImageError):
        return "unsupported or unrecognised image format"
    return f"cannot decode: {e or type(e).__name__}"
