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
    # Qwen3.5 and Qwen3.5-MoE (transformers model types qwen3_5, qwen3_5_moe): Qwen2VLImageProcessor and
    # Qwen3VLVideoProcessor, a Qwen3-VL-style tower (patch 16, temporal 2, merge 2; no deepstack). transformers
    # ships no checkpoint constants for them; these are Qwen3-VL's, which the tower's patch size requires.
    # from_pretrained reads a checkpoint's own files.
    ModelPreset("qwen3.5",
                VisionPreprocessConfig(patch_size=16, min_pixels=65536, max_pixels=16777216,
                                       image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5)),
                VideoConfig(min_pixels=4096, max_pixels=25165824, sizing="qwen3-vl", max_video_tokens=768,
                            fps=2.0),
                tower_types=("qwen3_5_vision", "qwen3_5", "qwen3_5_moe_vision", "qwen3_5_moe")),
    # Qwen/Qwen2.5-Omni-*: the image side of preprocessor_config.json is Qwen2.5-VL's; Qwen2_5OmniProcessor
    # sizes video frames with 128*28*28 .. 768*28*28 pixels each (Qwen2VLVideoProcessor, per frame) and
    # assumes fps 2. The tower windows like Qwen2.5-VL's.
    ModelPreset("qwen2.5-omni",
                VisionPreprocessConfig(patch_size=14, min_pixels=3136, max_pixels=12845056),
                VideoConfig(min_pixels=100352, max_pixels=602112, sizing="qwen2-vl", fps=2.0),
                window_size=112, tower_types=("qwen2_5_omni_vision_encoder",)),
    # Qwen/Qwen3-Omni-*: Qwen2VLImageProcessor with patch 16 and 3136 .. 12845056 pixels (mean/std not set,
    # so the class default, OpenAI CLIP); Qwen3OmniMoeProcessor sizes video frames with 128*32*32 ..
    # 768*32*32 pixels each (Qwen2VLVideoProcessor) and assumes fps 1. Qwen3-VL-style tower.
    ModelPreset("qwen3-omni",
                VisionPreprocessConfig(patch_size=16, min_pixels=3136, max_pixels=12845056),
                VideoConfig(min_pixels=131072, max_pixels=786432, sizing="qwen2-vl", fps=1.0),
                tower_types=("qwen3_omni_moe_vision_encoder",)),
    # dots3_note: Qwen2VLImageProcessor and Qwen3VLVideoProcessor in front of a tower whose patch embedding
    # is a 2-D convolution over (3, 14, 14), so rows are 3*14*14 = 588 wide (temporal_patch_size 1). No
    # checkpoint constants ship with transformers: the processors' class defaults (3136 .. 1003520 pixels,
    # OpenAI CLIP; video 131072 .. 786432 over the whole clip, fps 2; clips share the image mean/std, where
    # Qwen3VLVideoProcessor's own class default would be 0.5).
    ModelPreset("dots3-note",
                VisionPreprocessConfig(patch_size=14, temporal_patch_size=1, min_pixels=3136, max_pixels=1003520),
                VideoConfig(min_pixels=131072, max_pixels=786432, sizing="qwen3-vl", max_video_tokens=768, fps=2.0),
                tower_types=("dots3_note_vision_encoder",)),
    # zai-org/GLM-4.1V-Thinking, GLM-4.5V (glm4v_moe) and GLM-4.6V (glm46v): Glm4vImageProcessor /
    # Glm46VImageProcessor with size {"shortest_edge": 12544, "longest_edge": 9633792} (at most 6144 tokens)
    # and their own sizing (glm4v_smart_resize); the video processors size the whole clip (12544 ..
    # 47040000 pixels, the class default) and sample by time: Glm4vVideoProcessor at 2 fps, Glm46V at a rate
    # of its own. One tower family (learned 2-D position embedding).
    *(ModelPreset(name,
                  VisionPreprocessConfig(patch_size=14, min_pixels=12544, max_pixels=9633792, sizing="glm4v"),
                  VideoConfig(min_pixels=12544, max_pixels=47040000, sizing="qwen3-vl", sampling=rule,
                              fps=2.0 if rule == "glm4v" else None),
                  tower_types=types)
      for name, types, rule in (("glm-4.1v", ("glm4v_vision", "glm4v"), "glm4v"),
                                ("glm-4.5v", ("glm4v_moe_vision", "glm4v_moe"), "glm4v"),
                                ("glm-4.6v", ("glm46v",), "glm46v"))),
    # PaddlePaddle/PaddleOCR-VL: PaddleOCRVLImageProcessor, its own sizing (paddleocr_smart_resize), one
    # copy per image (temporal_patch_size 1) and rows in raster order (the projector gathers the 2x2 windows);
    # the released preprocessor_config.json sets mean/std 0.5 and 147384 .. 2822400 pixels (as published with
    # the checkpoint; the class defaults are 147456 .. 2359296 and OpenAI CLIP). transformers' pixel_values
    # are these rows viewed as [N, 3, 14, 14]. No video processor: clips get the image bounds per frame.
    ModelPreset("paddleocr-vl",
                VisionPreprocessConfig(patch_size=14, temporal_patch_size=1, min_pixels=147384, max_pixels=2822400,
                                       image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5),
                                       sizing="paddleocr-vl", row_order="raster"),
                VideoConfig(min_pixels=147384, max_pixels=2822400, sizing="qwen2-vl"),
                tower_types=("paddleocr_vl_vision", "paddleocr_vl")),
    # baidu/ERNIE-4.5-VL-*: Ernie4_5_VLMoeImageProcessor as the converted checkpoints save it (its class
    # defaults): Qwen2-VL sizing, 3136 .. 4842768 pixels, one copy per image (temporal_patch_size 1).
    # Its video processor draws a timestamp onto every frame before resizing, which this package does not
    # do: the video config sizes frames as that processor does (234416 .. 937664 pixels each), but clips are
    # not exact for ERNIE (see docs/model_family.md).
    ModelPreset("ernie-4.5-vl",
                VisionPreprocessConfig(patch_size=14, temporal_patch_size=1, min_pixels=3136, max_pixels=4842768),
                VideoConfig(min_pixels=234416, max_pixels=937664, sizing="qwen2-vl", min_frames=16, max_frames=180),
                tower_types=("ernie4_5_vl_moe_vision", "ernie4_5_vl_moe")),
)}

#: Image config of each preset (``PRESETS["qwen2-vl"]``).
PRESETS: dict[str, VisionPreprocessConfig] = {name: p.image for name, p in MODEL_PRESETS.items()}
#: Video config of each preset.
VIDEO_PRESETS: dict[str, VideoConfig] = {name: p.video for name, p in MODEL_PRESETS.items()}


# transformers' model types (``_`` written ``-``) of the families, and other spellings, -> preset name
_ALIASES = {"qwen2-5-vl": "qwen2.5-vl", "qwen3-5": "qwen3.5", "qwen3-5-moe": "qwen3.5", "qwen2-5-omni": "qwen2.5-omni",
            "qwen3-omni-moe": "qwen3-omni", "glm4v": "glm-4.1v", "glm4v-moe": "glm-4.5v", "glm46v": "glm-4.6v",
            "ernie4-5-vl-moe": "ernie-4.5-vl", "ernie-4-5-vl": "ernie-4.5-vl"}


def preset_key(name: str) -> str:
    """The :data:`MODEL_PRESETS` key of a preset name: case, ``_`` for ``-``, and transformers' model types
    (``"qwen2_5_vl"``, ``"glm4v_moe"``, ``"ernie4_5_vl_moe"`` ...) are accepted."""
    key = name.lower().replace("_", "-") if isinstance(name, str) else name
    key = _ALIASES.get(key, key)
    if key not in MODEL_PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(MODEL_PRESETS)}")
    return key


def get_preset(name: str) -> ModelPreset:
    """The :class:`ModelPreset` of a preset name."""
    return MODEL_PRESETS[preset_key(name)]


def _family(config: VisionPreprocessConfig) -> tuple:
    return (config.patch_size, config.temporal_patch_size, config.merge_size, config.image_mean,
            config.image_std, config.sizing, config.row_order)


def presets_of(config: VisionPreprocessConfig) -> list[ModelPreset]:
    """The presets a config belongs to: those whose image config has its patch sizes, mean/std, sizing rule
    and row order (pixel budgets and the other fields may be overridden)."""
    return [p for p in MODEL_PRESETS.values() if _family(p.image) == _family(config)]


def default_video_config(config: VisionPreprocessConfig | str | None) -> VideoConfig:
    """The video config of a preset name, or of the family of a config (:func:`presets_of`); ``None`` is
    ``"qwen2-vl"``. A config several presets share (Qwen2-VL's is also Qwen2.5-VL's and Qwen2.5-Omni's)
    gets the video rules of the first of them in :data:`MODEL_PRESETS` (the family's original model: pass
    ``video_config=VideoConfig.from_preset(name)`` for another); a config of no known family gets
    ``"qwen2-vl"``'s (transformers' ``Qwen2VLVideoProcessor``)."""
    if config is None:
        return MODEL_PRESETS["qwen2-vl"].video
    if isinstance(config, str):
        return get_preset(config).video
    family = presets_of(config)
    return family[0].video if family else MODEL_PRESETS["qwen2-vl"].video


def default_window_size(preset: VisionPreprocessConfig | str | None) -> int | None:
    """The tower's attention window of a preset name; ``None`` for a config instance or no preset (which
    tower it feeds is not known)."""
    return get_preset(preset).window_size if isinstance(preset, str) else None


def preset_of_tower(tower_config: object) -> ModelPreset | None:
    """The preset whose vision tower has this transformers config (by its ``model_type``), if any."""
    model_type = getattr(tower_config, "model_type", None)
    return next((p for p in MODEL_PRESETS.values() if model_type in p.tower_types), None)


register_presets(lambda name: (get_preset(name).image, get_preset(name).video))
