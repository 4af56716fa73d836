"""from_pretrained: the released preprocessor_config.json files, both spellings of the pixel budget, and the
errors/warnings for keys that cannot be honoured. Expected configs are the presets, which are checked against
HF's own processor built from the same file (grid sizes on many shapes)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from qwen_vis_prep import PRESETS, QwenVisionPreprocessor, VisionPreprocessConfig, smart_resize
from qwen_vis_prep.pretrained import PretrainedConfigError, config_from_hf, load_preprocessor_dict, to_hf_dict

DATA = Path(__file__).parent / "data"
RELEASED = {  # local copies of the files the checkpoints were released with
    "qwen2-vl": DATA / "Qwen2-VL-7B-Instruct",
    "qwen2.5-vl": DATA / "Qwen2.5-VL-7B-Instruct",
    "qwen3-vl": DATA / "Qwen3-VL-8B-Instruct",
}
SHAPES = [(1, 1), (28, 28), (100, 3000), (480, 640), (1080, 1920), (4000, 3000), (5000, 50), (7, 1399)]


def _released(preset: str) -> dict:
    return json.loads((RELEASED[preset] / "preprocessor_config.json").read_text())


@pytest.mark.parametrize("preset", sorted(RELEASED))
def test_released_file_gives_preset(preset):
    assert config_from_hf(RELEASED[preset]) == PRESETS[preset]


@pytest.mark.parametrize("preset", sorted(RELEASED))
@pytest.mark.parametrize("form", ["dir", "json-path", "str-path", "dict"])
def test_source_forms(preset, form):
    src = {"dir": RELEASED[preset], "json-path": RELEASED[preset] / "preprocessor_config.json",
           "str-path": str(RELEASED[preset] / "preprocessor_config.json"), "dict": _released(preset)}[form]
    module = QwenVisionPreprocessor.from_pretrained(src)
    assert isinstance(module, QwenVisionPreprocessor)
    assert module.config == PRESETS[preset]


@pytest.mark.parametrize("preset", sorted(RELEASED))
def test_grids_match_hf_processor_from_same_file(preset):
    """HF's processor built from the very same JSON plans the same grid for every shape."""
    mod = pytest.importorskip("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")
    hf = mod.Qwen2VLImageProcessorPil(**_released(preset))
    module = QwenVisionPreprocessor.from_pretrained(RELEASED[preset])
    c = module.config
    for h, w in SHAPES:
        try:
            expected = hf.get_number_of_image_patches(h, w, {})
        except ValueError:  # aspect ratio above 200: both refuse
            continue
        rh, rw = smart_resize(h, w, c.factor, c.min_pixels, c.max_pixels)
        assert (rh // c.patch_size) * (rw // c.patch_size) == expected, (h, w)


def test_preprocess_output_matches_hf_for_released_qwen3_file(rgb_chw):
    mod = pytest.importorskip("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")
    import PIL.Image

    hf = mod.Qwen2VLImageProcessorPil(**_released("qwen3-vl"))
    img = rgb_chw["chelsea"]
    ours = QwenVisionPreprocessor.from_pretrained(RELEASED["qwen3-vl"])(img)
    theirs = hf(PIL.Image.fromarray(img.permute(1, 2, 0).numpy()), return_tensors="pt")
    assert torch.equal(ours.grid_thw, theirs["image_grid_thw"])
    # float32 rounding of the normalisation only (a couple of ulps of values up to ~1)
    torch.testing.assert_close(ours.pixel_values, theirs["pixel_values"], rtol=0, atol=1e-6)


def test_size_dict_and_top_level_keys_are_equivalent():
    a = config_from_hf({"min_pixels": 1000, "max_pixels": 200000})
    b = config_from_hf({"size": {"shortest_edge": 1000, "longest_edge": 200000}})
    c = config_from_hf({"size": {"min_pixels": 1000, "max_pixels": 200000}})
    assert a == b == c
    assert (a.min_pixels, a.max_pixels) == (1000, 200000)


def test_missing_keys_take_transformers_class_defaults():
    assert config_from_hf({}) == VisionPreprocessConfig()
    assert config_from_hf({"image_processor_type": "Qwen2VLImageProcessor"}).max_pixels == 28 * 28 * 1280


def test_transformers_saved_form_roundtrips():
    """What each preset's transformers class (``Qwen2VLImageProcessor``, ``Glm4vImageProcessor``,
    ``PaddleOCRVLImageProcessor`` ...) writes with ``save_pretrained`` (resample as 3, rescale_factor, do_*
    flags, its own type name) reads back as the preset."""
    transformers = pytest.importorskip("transformers")
    for preset, config in PRESETS.items():
        keys = to_hf_dict(config)
        cls = getattr(transformers, keys.pop("image_processor_type"))
        saved = json.loads(cls(**keys).to_json_string())
        assert config_from_hf(saved) == config, preset


def test_to_hf_dict_roundtrip():
    config = PRESETS["qwen3-vl"].replace(do_normalize=False, min_pixels=4096)
    assert config_from_hf(to_hf_dict(config)) == config


def test_contradictory_budget_warns_and_follows_transformers():
    data = {"min_pixels": 3136, "max_pixels": 12845056, "size": {"shortest_edge": 3136, "longest_edge": 1003520}}
    with pytest.warns(UserWarning, match=r"max_pixels=12845056 contradicts size\['longest_edge'\]=1003520"):
        config = config_from_hf(data)
    assert config.max_pixels == 12845056  # transformers' Qwen2VLImageProcessor lets the top-level key win
    mod = pytest.importorskip("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")
    assert mod.Qwen2VLImageProcessorPil(**data).size["longest_edge"] == 12845056


def test_agreeing_duplicate_keys_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config_from_hf({"min_pixels": 3136, "size": {"shortest_edge": 3136, "longest_edge": 1003520}})


def test_contradiction_inside_size_dict_raises():
    with pytest.raises(PretrainedConfigError, match="two different min_pixels"):
        config_from_hf({"size": {"shortest_edge": 3136, "min_pixels": 4096}})


def test_unknown_key_raises_then_warns_with_strict_false():
    data = {**_released("qwen2-vl"), "max_image_tokens": 1024}
    with pytest.raises(PretrainedConfigError, match=r"unknown key\(s\) \['max_image_tokens'\].*strict=False"):
        config_from_hf(data)
    with pytest.warns(UserWarning, match="max_image_tokens"):
        assert config_from_hf(data, strict=False) == PRESETS["qwen2-vl"]


@pytest.mark.parametrize("key,value", [("resample", 2), ("do_center_crop", True), ("do_pad", True),
                                       ("crop_size", {"height": 224, "width": 224})],
                         ids=["bilinear", "center-crop", "pad", "crop-size"])
def test_unsupported_values_raise(key, value):
    with pytest.raises(PretrainedConfigError, match=key):
        config_from_hf({key: value})


def test_size_with_height_width_raises():
    with pytest.raises(PretrainedConfigError, match="shortest_edge"):
        config_from_hf({"size": {"height": 448, "width": 448}})


def test_invalid_values_name_the_file(tmp_path):
    f = tmp_path / "preprocessor_config.json"
    f.write_text(json.dumps({"min_pixels": 5000, "max_pixels": 100}))
    with pytest.raises(PretrainedConfigError, match=r"preprocessor_config.json: min_pixels must be <= max_pixels"):
        config_from_hf(f)


def test_bad_json_and_missing_files(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(PretrainedConfigError, match="not valid JSON"):
        config_from_hf(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no preprocessor_config.json"):
        config_from_hf(empty)
    with pytest.raises(FileNotFoundError, match="no such file"):
        config_from_hf(tmp_path / "nope.json")


def test_hub_id_is_never_downloaded(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="never downloads"):
        QwenVisionPreprocessor.from_pretrained("Qwen/Qwen2-VL-7B-Instruct-not-cached")


@pytest.mark.parametrize("missing", ["/missing", "/tmp/nope.json", "~/no-such-model-dir", "./no/such",
                                     ".hidden/model", "no/such/model", "not..a/hub-id", "a--b/c", "-a/b",
                                     "owner/name.", "own er/name", "owner\\name"])
def test_missing_path_that_is_no_hub_id(missing, monkeypatch, tmp_path):
    """Absolute paths, paths starting with '.' or '~', and strings without the owner/name shape of a hub id
    are missing files, never looked up in the Hugging Face cache."""
    if Path(missing).expanduser().exists():
        pytest.skip(f"{missing} exists on this machine")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as info:
        config_from_hf(missing)
    assert str(info.value) == (f"{missing}: no such file or directory (expected a model directory, a "
                               f"preprocessor_config.json path or a hub id 'owner/name' in the local Hugging "
                               f"Face cache)")
    if str(Path(missing)) == missing:  # the same as a Path object (Path drops a leading './')
        with pytest.raises(FileNotFoundError, match="no such file or directory"):
            config_from_hf(Path(missing))


def test_processor_config_json_layout(tmp_path):
    """transformers 5 may save all sub-processors in one processor_config.json."""
    (tmp_path / "processor_config.json").write_text(json.dumps(
        {"processor_class": "Qwen3VLProcessor", "image_processor": _released("qwen3-vl")}))
    assert config_from_hf(tmp_path) == PRESETS["qwen3-vl"]
    data, origin = load_preprocessor_dict(tmp_path)
    assert data["patch_size"] == 16 and origin.endswith("processor_config.json")


def test_overrides_apply_on_top(tmp_path):
    shutil.copytree(RELEASED["qwen2.5-vl"], tmp_path / "m")
    module = QwenVisionPreprocessor.from_pretrained(tmp_path / "m", output_dtype=torch.bfloat16,
                                                    resize_mode="float", max_pixels=401408, backend="torch")
    assert module.config == PRESETS["qwen2.5-vl"].replace(output_dtype=torch.bfloat16, resize_mode="float",
                                                          max_pixels=401408)
    assert module.backend == "torch"
