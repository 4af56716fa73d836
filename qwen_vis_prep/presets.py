"""The model presets: everything that defines how one model family's checkpoints preprocess, in one entry.

Each :class:`ModelPreset` holds the image config, the video config, the vision tower's attention window and
the transformers ``model_type`` of its vision tower. Everything else in the package reads these entries:
``QwenVisionPreprocessor("qwen2.5-vl")``, ``VisionPreprocessConfig.from_preset``, the default video sizing
of a config, the window of ``tower_inputs`` and of :class:`~qwen_vis_prep.QwenVisionEncoder`. Adding a model
is one entry here (plus one row in the parity tests).
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import VideoConfig, VisionPreprocessConfig, register_presets


@dataclass(frozen=True)
class ModelPreset:
    """One model family.

    * ``image`` / ``video``: the configs its released ``preprocessor_config.json`` (and
      ``video_preprocessor_config.json``) give, as transformers reads them.
    * ``window_size``: the vision tower's windowed-attention span in pixels (Qwen2.5-VL: 112), ``None`` for
      towers with full attention only.
    * ``tower_types``: the ``model_type`` of its vision tower's config in transformers.
    """

    name: str
    image: VisionPreprocessConfig
    video: VideoConfig
    window_size: int | None = None
    tower_types: tuple[str, ...] = ()


MODEL_PRESETS: dict[str, ModelPreset] = {p.name: p for p in (
    # Qwen/Qwen2-VL-*-Instruct: preprocessor_config.json. No video_preprocessor_config.json ships, so
    # transformers' video processor falls back to preprocessor_config.json: the same pixel bounds per frame
    # (the class defaults would be 128*28*28 .. 768*28*28, qwen-vl-utils' VIDEO_MIN/MAX_PIXELS). Video
    # max_video_tokens 128000 and min/max_frames 4/768 are Qwen2VLVideoProcessor's class defaults; it does not
    # sample by default.
    ModelPreset("qwen2-vl",
                VisionPreprocessConfig(patch_size=14, min_pixels=3136, max_pixels=12845056),
                VideoConfig(min_pixels=3136, max_pixels=12845056, sizing="qwen2-vl"),
                tower_types=("qwen2_vl_vision", "qwen2_vl")),
    # Qwen/Qwen2.5-VL-*-Instruct: as Qwen2-VL, plus windowed attention in the tower
    # (Qwen2_5_VLVisionConfig.window_size, the transformers default and the released config.json).
    ModelPreset("qwen2.5-vl",
                VisionPreprocessConfig(patch_size=14, min_pixels=3136, max_pixels=12845056),
                VideoConfig(min_pixels=3136, max_pixels=12845056, sizing="qwen2-vl"),
                window_size=112, tower_types=("qwen2_5_vl_vision", "qwen2_5_vl")),
    # Qwen/Qwen3-VL-*: size {"shortest_edge": 65536, "longest_edge": 16777216}, mean/std 0.5. Video
    # (video_preprocessor_config.json): size {"shortest_edge": 4096, "longest_edge": 25165824}, fps 2,
    # min_frames 4, max_frames 768; max_video_tokens 768 is Qwen3VLVideoProcessor's class default
    # (qwen-vl-utils' VIDEO_MAX_TOKEN_NUM).
    ModelPreset("qwen3-vl",
                VisionPreprocessConfig(patch_size=16, min_pixels=65536, max_pixels=16777216,
                                       image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5)),
                VideoConfig(min_pixels=4096, max_pixels=25165824, sizing="qwen3-vl", max_video_tokens=768,
                            fps=2.0),
                tower_types=("qwen3_vl_vision", "qwen3_vl")),
)}

#: Image config of each preset (``PRESETS["qwen2-vl"]``).
PRESETS: dict[str, VisionPreprocessConfig] = {name: p.image for name, p in MODEL_PRESETS.items()}
#: Video config of each preset.
VIDEO_PRESETS: dict[str, VideoConfig] = {name: p.video for name, p in MODEL_PRESETS.items()}


def preset_key(name: str) -> str:
    """The :data:`MODEL_PRESETS` key of a preset name (case, ``_`` and ``qwen2-5`` spellings accepted)."""
    key = name.lower().replace("_", "-").replace("qwen2-5", "qwen2.5") if isinstance(name, str) else name
    if key not in MODEL_PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(MODEL_PRESETS)}")
    return key


def get_preset(name: str) -> ModelPreset:
    """The :class:`ModelPreset` of a preset name."""
    return MODEL_PRESETS[preset_key(name)]


def _family(config: VisionPreprocessConfig) -> tuple:
    return (config.patch_size, config.temporal_patch_size, config.merge_size, config.image_mean,
            config.image_std)


def presets_of(config: VisionPreprocessConfig) -> list[ModelPreset]:
    """The presets a config belongs to: those whose image config has its patch sizes and mean/std (pixel
    budgets and the other fields may be overridden)."""
    return [p for p in MODEL_PRESETS.values() if _family(p.image) == _family(config)]


def default_video_config(config: VisionPreprocessConfig | str | None) -> VideoConfig:
    """The video config of a preset name, or of the family of a config (:func:`presets_of`); ``None`` is
    ``"qwen2-vl"``. A config of no known family gets ``"qwen2-vl"``'s video rules (transformers'
    ``Qwen2VLVideoProcessor``); one whose matching presets size videos differently raises ``ValueError``."""
    if config is None:
        return MODEL_PRESETS["qwen2-vl"].video
    if isinstance(config, str):
        return get_preset(config).video
    family = presets_of(config)
    videos = {p.video for p in family}
    if not videos:
        return MODEL_PRESETS["qwen2-vl"].video
    if len(videos) > 1:
        names = [p.name for p in family]
        raise ValueError(f"this config matches presets {names}, which size videos differently; pass "
                         f"video_config=<one of them> to choose")
    return videos.pop()


def default_window_size(preset: VisionPreprocessConfig | str | None) -> int | None:
    """The tower's attention window of a preset name; ``None`` for a config instance or no preset (which
    tower it feeds is not known)."""
    return get_preset(preset).window_size if isinstance(preset, str) else None


def preset_of_tower(tower_config: object) -> ModelPreset | None:
    """The preset whose vision tower has this transformers config (by its ``model_type``), if any."""
    model_type = getattr(tower_config, "model_type", None)
    return next((p for p in MODEL_PRESETS.values() if model_type in p.tower_types), None)


register_presets(lambda name: (get_preset(name).image, get_preset(name).video))
