"""A batch collator for Qwen-VL training that plans vision tokens from image sizes alone.

:class:`QwenVLCollator` builds ``input_ids`` / ``attention_mask`` / ``labels`` exactly as the stock transformers
processor (``Qwen2VLProcessor``, ``Qwen2_5_VLProcessor``, ``Qwen3VLProcessor``) would, but never resizes,
normalises or patchifies: each ``<|image_pad|>`` / ``<|video_pad|>`` is expanded from the ``grid_thw`` that
the sizing rules give for the pixel size (:func:`qwen_vis_prep.sizing.target_size`,
:func:`~qwen_vis_prep.sizing.video_target_size`), and the pixels travel as uint8 in one flat buffer per kind
(:func:`pack_pixels`), to be preprocessed on the accelerator. The stock processor class does the token
expansion itself, with plan-only image and video processors swapped into a shallow copy of it, so Qwen3-VL's
``<t seconds>`` markers and Qwen2.5-VL's ``second_per_grid_ts`` come out as usual.

Needs ``transformers`` (imported by this module only).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable, Literal, NamedTuple, Sequence, Union

import numpy as np
import PIL.Image
import torch
from transformers.image_processing_base import BatchFeature, ImageProcessingMixin
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessorKwargs
from transformers.video_processing_utils import VideoProcessorMixin
from transformers.video_utils import VideoMetadata

from .config import VideoConfig, VisionPreprocessConfig
from .hf_adapter import HFQwenImageProcessor, HFQwenVideoProcessor, _hf_metadata
from .packing import pack_pixels, unpack_pixels
from .sizing import grid_hw, target_size, video_grid_thw, video_target_size
from .video_decode import DecodedVideo
from .video_decode import VideoMetadata as DecodedVideoMetadata

__all__ = ["QwenVLCollator", "assistant_token_mask", "pack_pixels", "unpack_pixels", "vision_token_mask"]

LabelMask = Union[Literal["assistant", "none"], Callable[[dict], torch.Tensor]]

# Keys of the processor output that the collator replaces (pixels) or never returns (host-side metadata).
_DROPPED = ("pixel_values", "pixel_values_videos", "video_metadata")
_NO_PIXELS = torch.empty(0, dtype=torch.uint8)


# ------------------------------------------------------------------------------------------- pixels

# ------------------------------------------------------------------------------------------- grids

def image_grid(height: int, width: int, config: VisionPreprocessConfig) -> tuple[int, int, int]:
    """``(1, grid_h, grid_w)`` of one image of this size under ``config``."""
    h, w = target_size(height, width, config)
    return (1, *grid_hw(h, w, config.patch_size))


def clip_grid(frames: int, height: int, width: int, config: VisionPreprocessConfig,
              video_config: VideoConfig) -> tuple[int, int, int]:
    """``(grid_t, grid_h, grid_w)`` of one ``frames``-frame clip of this frame size."""
    return video_grid_thw(frames, video_target_size(frames, height, width, config, video_config), config)


class _PlanImageProcessor(ImageProcessingMixin):
    """Image processor that returns ``image_grid_thw`` from image sizes and an empty ``pixel_values``."""

    model_input_names = ["pixel_values", "image_grid_thw"]
    valid_kwargs = Qwen2VLImageProcessorKwargs

    def __init__(self, config: VisionPreprocessConfig) -> None:
        super().__init__()
        self.config = config

    patch_size = property(lambda self: self.config.patch_size)
    merge_size = property(lambda self: self.config.merge_size)
    temporal_patch_size = property(lambda self: self.config.temporal_patch_size)

    def __call__(self, images: Sequence[torch.Tensor], **_: Any) -> BatchFeature:
        grids = [image_grid(int(x.shape[-2]), int(x.shape[-1]), self.config) for x in images]
        return BatchFeature({"pixel_values": _NO_PIXELS,
                             "image_grid_thw": torch.tensor(grids, dtype=torch.int64).reshape(-1, 3)})


class _PlanVideoProcessor(VideoProcessorMixin):
    """Video processor that returns ``video_grid_thw`` from clip sizes, the clips' ``video_metadata`` as given
    (no frame sampling) and an empty ``pixel_values_videos``."""

    model_input_names = ["pixel_values_videos", "video_grid_thw"]

    def __init__(self, config: VisionPreprocessConfig, video_config: VideoConfig) -> None:
        super().__init__()
        self.config = config
        self.video_config = video_config

    patch_size = property(lambda self: self.config.patch_size)
    merge_size = property(lambda self: self.config.merge_size)
    temporal_patch_size = property(lambda self: self.config.temporal_patch_size)

    def __call__(self, videos: Sequence[torch.Tensor], *, video_metadata: Any = None, **_: Any) -> BatchFeature:
        grids = [clip_grid(int(v.shape[0]), int(v.shape[-2]), int(v.shape[-1]), self.config, self.video_config)
                 for v in videos]
        return BatchFeature({"pixel_values_videos": _NO_PIXELS,
                             "video_grid_thw": torch.tensor(grids, dtype=torch.int64).reshape(-1, 3),
                             "video_metadata": list(video_metadata or [])})


# ------------------------------------------------------------------------------------------- labels

def assistant_token_mask(input_ids: torch.Tensor, header: Sequence[int], end_id: int,
                         merged_ids: Sequence[int] = ()) -> torch.Tensor:
    """``[B, L]`` bool: True on the tokens of assistant turns.

    A turn starts right after each occurrence of the ``header`` token sequence (``<|im_start|>assistant\\n``
    tokenised) and runs up to and including the next ``end_id`` (``<|im_end|>``), or to the end of the row
    when there is none (a truncated or unfinished turn). The header itself is never included.

    ``merged_ids``: tokens in which a byte-level BPE tokenizer merges the header's last token (its ``\\n``)
    with the start of the reply (a reply starting with ``\\n``: ``\\n\\n`` is one token). ``header[:-1]``
    followed by one of these also starts a turn, at that token (kept, as transformers' assistant mask does).
    """
    b, length = input_ids.shape
    k = len(header)
    positions = torch.arange(length).expand(b, length)
    opened = torch.full((b, length), -1, dtype=torch.long)
    if 0 < k < length:
        hits = (input_ids.unfold(1, k, 1) == torch.as_tensor(list(header), dtype=input_ids.dtype)).all(-1)
        rows, starts = hits[:, : length - k].nonzero(as_tuple=True)
        opened[rows, starts + k] = starts + k
    if len(merged_ids) and 1 < k <= length:
        p = k - 1
        hits = (input_ids.unfold(1, p, 1) == torch.as_tensor(list(header[:-1]), dtype=input_ids.dtype)).all(-1)
        hits = hits[:, : length - p] & torch.isin(input_ids[:, p:], torch.as_tensor(list(merged_ids),
                                                                                    dtype=input_ids.dtype))
        rows, starts = hits.nonzero(as_tuple=True)
        opened[rows, starts + p] = starts + p
    last_open = opened.cummax(1).values
    closed = torch.where(input_ids == end_id, positions, torch.full_like(positions, -1)).cummax(1).values
    closed_before = torch.cat([torch.full((b, 1), -1, dtype=torch.long), closed[:, :-1]], 1)
    return last_open > closed_before


def vision_token_mask(input_ids: torch.Tensor, pad_ids: Sequence[int], start_id: int | None,
                      end_id: int | None) -> torch.Tensor:
    """``[B, L]`` bool: True on vision placeholder tokens (``pad_ids``) and everything from a ``start_id``
    (``<|vision_start|>``) to its matching ``end_id`` (``<|vision_end|>``) inclusive, nesting counted (so
    Qwen3-VL's ``<t seconds>`` markers inside a video's span count as vision)."""
    mask = torch.isin(input_ids, torch.as_tensor(list(pad_ids), dtype=input_ids.dtype))
    if start_id is not None and end_id is not None:
        is_end = (input_ids == end_id).long()
        depth = (input_ids == start_id).long().cumsum(1) - is_end.cumsum(1)
        mask |= (depth + is_end) > 0
    return mask


# ------------------------------------------------------------------------------------------ examples

class _Example(NamedTuple):
    text: str
    images: list[torch.Tensor]
    videos: list[torch.Tensor]
    metadata: list[VideoMetadata]


def _as_list(example: dict, key: str, where: str) -> list:
    items = example.get(key)
    if items is None:
        return []
    if not isinstance(items, (list, tuple)):
        raise TypeError(f"{where}: '{key}' must be a list, got {type(items).__name__}")
    return list(items)


def _image_tensor(x: Any, where: str) -> torch.Tensor:
    """One image as a ``[3, H, W]`` uint8 tensor (a CHW tensor as is, an HWC array or a PIL image converted)."""
    if isinstance(x, PIL.Image.Image):
        from .checks import pil_to_hwc

        return pil_to_hwc(x).permute(2, 0, 1)
    return _uint8_pixels(x, where, frames=False)


def _clip_tensor(x: Any, where: str) -> torch.Tensor:
    """One clip as a ``[T, 3, H, W]`` uint8 tensor (``[T, H, W, 3]`` arrays converted)."""
    return _uint8_pixels(x, where, frames=True)


def _uint8_pixels(x: Any, where: str, frames: bool) -> torch.Tensor:
    """``[3, H, W]`` (``[T, 3, H, W]`` with ``frames``) uint8 from such a tensor or a channels-last array."""
    lead = "T, " if frames else ""
    dims = 4 if frames else 3
    if isinstance(x, np.ndarray):
        if x.dtype != np.uint8:
            raise TypeError(f"{where}: expected a uint8 array, got dtype {x.dtype}")
        if x.ndim != dims or x.shape[-1] != 3:
            raise ValueError(f"{where}: expected a [{lead}H, W, 3] array, got shape {x.shape}")
        return torch.from_numpy(x).movedim(-1, -3)
    if isinstance(x, torch.Tensor):
        if x.dtype != torch.uint8:
            raise TypeError(f"{where}: expected a uint8 tensor, got {x.dtype}")
        if x.dim() != dims or x.shape[-3] != 3:
            raise ValueError(f"{where}: expected a [{lead}3, H, W] tensor, got shape {tuple(x.shape)}")
        return x
    other = "a DecodedVideo" if frames else "a PIL image"
    raise TypeError(f"{where}: expected a [{lead}3, H, W] uint8 tensor, a [{lead}H, W, 3] uint8 array or {other}, "
                    f"got {type(x).__name__}")


def _metadata(given: Any, clip: torch.Tensor, where: str) -> VideoMetadata:
    """A fresh transformers ``VideoMetadata`` for one clip (the processors mutate it): from ``given`` (None, a
    dict, a transformers or a :mod:`qwen_vis_prep.video_decode` ``VideoMetadata``), else as transformers
    defaults it for frames without metadata (every frame kept, frame rate unknown)."""
    t, h, w = int(clip.shape[0]), int(clip.shape[-2]), int(clip.shape[-1])
    if given is None:
        meta = VideoMetadata(total_num_frames=t, fps=None, height=h, width=w, frames_indices=list(range(t)))
    elif isinstance(given, DecodedVideoMetadata):
        meta = _hf_metadata(given)
    elif isinstance(given, VideoMetadata):
        meta = dataclasses.replace(given)
    elif isinstance(given, dict):
        try:
            meta = VideoMetadata(**{"total_num_frames": t, "height": h, "width": w, **given})
        except TypeError as e:
            raise TypeError(f"{where}: bad video metadata dict: {e}") from None
    else:
        raise TypeError(f"{where}: video metadata must be None, a dict or a VideoMetadata, got "
                        f"{type(given).__name__}")
    meta.frames_indices = list(range(t)) if meta.frames_indices is None else [int(i) for i in meta.frames_indices]
    if len(meta.frames_indices) != t:
        raise ValueError(f"{where}: the metadata lists {len(meta.frames_indices)} frame indices but the clip has "
                         f"{t} frames")
    return meta


# ------------------------------------------------------------------------------------------ collator

class QwenVLCollator:
    """Examples -> a training batch with ``input_ids`` identical to the stock processor's and uint8 pixels.

    ``processor``: a transformers ``Qwen2VLProcessor`` / ``Qwen2_5_VLProcessor`` / ``Qwen3VLProcessor`` (or
    one patched by :func:`qwen_vis_prep.hf_adapter.patch_processor`); its tokenizer, chat template and the
    settings of its image and video processors are used, its pixel code never runs and it is not modified.

    Each example is a dict with either ``"messages"`` (a conversation in the Hugging Face chat format, rendered
    with ``processor.apply_chat_template(messages, tokenize=False, **chat_template_kwargs)``; its
    ``{"type": "image"}`` / ``{"type": "video"}`` items take the example's images / videos in order) or
    ``"text"`` (a string with ``<|vision_start|><|image_pad|><|vision_end|>`` style placeholders already in),
    and optionally

    * ``"images"``: ``[3, H, W]`` uint8 tensors, ``[H, W, 3]`` uint8 arrays or PIL images;
    * ``"videos"``: ``[T, 3, H, W]`` uint8 tensors, ``[T, H, W, 3]`` uint8 arrays or
      :class:`~qwen_vis_prep.DecodedVideo` (whose ``.metadata`` gives the source fps and frame indices);
    * ``"video_metadata"``: one entry per video (None, a dict of transformers ``VideoMetadata`` fields, or a
      ``VideoMetadata``), overriding a ``DecodedVideo``'s own. Without any, a clip counts as every frame of a
      video of unknown frame rate, as in transformers (Qwen3-VL and Qwen2.5-VL then assume 24 fps).

    Clips are used as given (no frame sampling: sample when decoding, e.g. with :func:`qwen_vis_prep.load_video`).

    ``label_mask``: ``"assistant"`` trains on assistant turns only (see :func:`assistant_token_mask`: the tokens
    after each ``<|im_start|>assistant\\n`` up to and including its ``<|im_end|>``), ``"none"`` on every token,
    or a callable ``batch -> [B, L] bool`` (True = train on). Padding and vision tokens (see
    :func:`vision_token_mask`) are always set to ``ignore_index``. ``padding`` and ``max_length`` go to the
    tokenizer (``max_length`` truncates; cutting into a vision span raises ``ValueError``).
    """

    def __init__(self, processor: Any, *, max_length: int | None = None, padding: bool | str = True,
                 label_mask: LabelMask = "assistant", ignore_index: int = -100,
                 chat_template_kwargs: dict | None = None) -> None:
        if not (label_mask in ("assistant", "none") or callable(label_mask)):
            raise ValueError(f"label_mask must be 'assistant', 'none' or a callable, got {label_mask!r}")
        self.processor = processor
        self.max_length = max_length
        self.padding = padding
        self.label_mask = label_mask
        self.ignore_index = ignore_index
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self._planner = copy.copy(processor)
        ip = processor.image_processor
        self._planner.image_processor = _PlanImageProcessor(
            ip.config if isinstance(ip, HFQwenImageProcessor) else HFQwenImageProcessor.from_hf(ip).config)
        vp = getattr(processor, "video_processor", None)
        if vp is not None:
            vp = vp if isinstance(vp, HFQwenVideoProcessor) else HFQwenVideoProcessor.from_hf(vp)
            self._planner.video_processor = _PlanVideoProcessor(vp.config, vp.video_config)
        tok = processor.tokenizer
        self._image_token = processor.image_token
        self._video_token = processor.video_token
        self._pad_ids = [processor.image_token_id, processor.video_token_id]
        self._span_ids = [_token_id(tok, "<|vision_start|>"), _token_id(tok, "<|vision_end|>")]
        self._header = tok.encode("<|im_start|>assistant\n", add_special_tokens=False)
        self._merged_ids = _merged_newline_ids(tok, self._header[-1]) if self._header else []
        self._end_id = _token_id(tok, "<|im_end|>")
        if label_mask == "assistant" and self._end_id is None:
            raise ValueError("label_mask='assistant' needs a tokenizer with the <|im_end|> token")

    def __call__(self, examples: Sequence[dict]) -> dict[str, Any]:
        """Examples -> ``input_ids``, ``attention_mask``, ``labels`` ``[B, L]`` int64, the processor's other text
        keys (``mm_token_type_ids``, ``second_per_grid_ts`` ...), and per kind present: ``image_grid_thw``
        ``[N, 3]`` int64, ``pixel_images`` flat uint8, ``image_sizes`` list of ``(3, H, W)``;
        ``video_grid_thw`` ``[M, 3]`` int64, ``pixel_videos`` flat uint8, ``video_sizes`` list of
        ``(T, 3, H, W)``."""
        if not isinstance(examples, (list, tuple)) or not examples:
            raise ValueError("examples: expected a non-empty list of example dicts")
        prepared = [self._prepare(i, ex) for i, ex in enumerate(examples)]
        images = [x for ex in prepared for x in ex.images]
        videos = [x for ex in prepared for x in ex.videos]
        if videos and not isinstance(self._planner.video_processor, _PlanVideoProcessor):
            raise ValueError("examples have videos but the processor has no video_processor")
        inputs: dict[str, Any] = {"text": [ex.text for ex in prepared], "padding": self.padding,
                                  "return_tensors": "pt"}
        if images:
            inputs["images"] = images
        if videos:
            inputs["videos"] = videos
            inputs["video_metadata"] = [m for ex in prepared for m in ex.metadata]
        if self.max_length is not None:
            inputs.update(truncation=True, max_length=self.max_length)
        try:
            features = self._planner(**inputs)
        except ValueError as e:
            if self.max_length is None or "Mismatch in" not in str(e):
                raise
            raise ValueError(self._truncation_error(inputs)) from None
        batch = {k: v for k, v in features.items() if k not in _DROPPED}
        batch["labels"] = self._labels(batch)
        if images:
            batch["pixel_images"], batch["image_sizes"] = pack_pixels(images)
        if videos:
            batch["pixel_videos"], batch["video_sizes"] = pack_pixels(videos)
        return batch

    def _prepare(self, i: int, example: Any) -> _Example:
        where = f"example {i}"
        if not isinstance(example, dict):
            raise TypeError(f"{where}: expected a dict, got {type(example).__name__}")
        if ("messages" in example) == ("text" in example):
            hint = ""
            if not ({"messages", "text", "images", "videos"} & set(example)):
                hint = ("; transformers.Trainer drops the dataset columns that the model's forward does not name "
                        "unless TrainingArguments(remove_unused_columns=False)")
            raise ValueError(f"{where}: expected exactly one of 'messages' (a conversation) or 'text' (a string), "
                             f"got keys {sorted(example)}{hint}")
        if "text" in example:
            text = example["text"]
            if not isinstance(text, str):
                raise TypeError(f"{where}: 'text' must be a string, got {type(text).__name__}")
        else:
            messages = example["messages"]
            if not isinstance(messages, (list, tuple)) or not all(isinstance(m, dict) for m in messages):
                raise TypeError(f"{where}: 'messages' must be a list of message dicts")
            text = self._planner.apply_chat_template(list(messages), tokenize=False, **self.chat_template_kwargs)
        images = [_image_tensor(x, f"{where}, images[{j}]") for j, x in enumerate(_as_list(example, "images", where))]
        raw = _as_list(example, "videos", where)
        given = _as_list(example, "video_metadata", where) or [None] * len(raw)
        if len(given) != len(raw):
            raise ValueError(f"{where}: {len(given)} video_metadata entries for {len(raw)} videos")
        videos, metadata = [], []
        for j, (v, meta) in enumerate(zip(raw, given)):
            if isinstance(v, DecodedVideo):
                v, meta = v.frames, v.metadata if meta is None else meta
            clip = _clip_tensor(v, f"{where}, videos[{j}]")
            videos.append(clip)
            metadata.append(_metadata(meta, clip, f"{where}, videos[{j}]"))
        for kind, token, items in (("image", self._image_token, images), ("video", self._video_token, videos)):
            if text.count(token) != len(items):
                raise ValueError(f"{where}: {text.count(token)} {kind} placeholder(s) ({token}) in its text but "
                                 f"{len(items)} {kind}(s)")
        self._check_sizes(where, images, videos)
        return _Example(text, images, videos, metadata)

    def _check_sizes(self, where: str, images: list[torch.Tensor], videos: list[torch.Tensor]) -> None:
        """Raise for sizes the sizing rules reject, naming the example."""
        planner = self._planner
        for j, x in enumerate(images):
            try:
                image_grid(int(x.shape[-2]), int(x.shape[-1]), planner.image_processor.config)
            except ValueError as e:
                raise ValueError(f"{where}, images[{j}]: {e}") from None
        if videos and isinstance(planner.video_processor, _PlanVideoProcessor):
            vp = planner.video_processor
            for j, v in enumerate(videos):
                try:
                    clip_grid(int(v.shape[0]), int(v.shape[-2]), int(v.shape[-1]), vp.config, vp.video_config)
                except ValueError as e:
                    raise ValueError(f"{where}, videos[{j}]: {e}") from None

    def _labels(self, batch: dict[str, Any]) -> torch.Tensor:
        ids = batch["input_ids"]
        if self.label_mask == "assistant":
            keep = assistant_token_mask(ids, self._header, self._end_id, self._merged_ids)
        elif self.label_mask == "none":
            keep = torch.ones_like(ids, dtype=torch.bool)
        else:
            keep = torch.as_tensor(self.label_mask(batch))
            if keep.shape != ids.shape or keep.dtype != torch.bool:
                raise ValueError(f"label_mask callable must return a bool tensor of shape {tuple(ids.shape)}, "
                                 f"got {keep.dtype} {tuple(keep.shape)}")
        keep = keep & batch["attention_mask"].bool() & ~vision_token_mask(ids, self._pad_ids, *self._span_ids)
        return torch.where(keep, ids, torch.full_like(ids, self.ignore_index))

    def _truncation_error(self, inputs: dict[str, Any]) -> str:
        """Which examples ``max_length`` cuts inside a vision span (tokenising again, untruncated)."""
        full = self._planner(**{**inputs, "truncation": False, "max_length": None, "padding": False,
                                "return_tensors": None})
        cut = []
        for i, ids in enumerate(full["input_ids"]):
            vision = vision_token_mask(torch.tensor([ids]), self._pad_ids, *self._span_ids)[0]
            kept = slice(0, self.max_length) if self.processor.tokenizer.truncation_side == "right" \
                else slice(len(ids) - self.max_length, None)
            if len(ids) > self.max_length and bool(vision.sum() != vision[kept].sum()):
                cut.append(i)
        return (f"max_length={self.max_length} would cut vision tokens of example(s) {cut}; raise max_length or "
                f"shorten those examples")


def _merged_newline_ids(tokenizer: Any, newline_id: int) -> list[int]:
    """Ids of the tokens that start with the header's last token (``\\n``, ``Ċ`` in a byte-level vocabulary)
    and go on: what a byte-level BPE tokenizer makes of that ``\\n`` and a reply that starts with a newline."""
    newline = tokenizer.convert_ids_to_tokens(newline_id)
    if not isinstance(newline, str) or not newline or tokenizer.decode([newline_id]) != "\n":
        return []
    return sorted(i for t, i in tokenizer.get_vocab().items() if t.startswith(newline) and t != newline)


def _token_id(tokenizer: Any, token: str) -> int | None:
    """The id of a single special token, or None when the tokenizer does not know it."""
    tid = tokenizer.convert_tokens_to_ids(token)
    return None if tid is None or tid == tokenizer.unk_token_id else int(tid)
