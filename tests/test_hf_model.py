"""``QwenVLWithPreprocessor`` against the stock pipeline: tiny randomly initialised transformers Qwen2-VL,
Qwen2.5-VL and Qwen3-VL models fed ``pixel_values`` from transformers' own processors must give the loss and
gradients the wrapper gives from the raw uint8 pixels; and the wrapper must behave as the model under
``state_dict``, gradient checkpointing, autocast / bf16, ``torch.compile``, DDP and ``transformers.Trainer``.
On CUDA, ``model_inputs`` must sync nothing once warm and be capturable in a CUDA graph."""

from __future__ import annotations

import logging
import math
import re
import os

import pytest
import torch
from PIL import Image

import qwen_vis_prep as qvp

pytest.importorskip("transformers")
import transformers  # noqa: E402
from transformers import (  # noqa: E402
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLVideoProcessor,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
)

from qwen_vis_prep.hf_model import QwenVLWithPreprocessor  # noqa: E402

logging.getLogger("transformers").setLevel(logging.ERROR)

VOCAB = 64
PAD, BOS, EOS = 0, 1, 2
TOKENS = dict(vision_start_token_id=58, vision_end_token_id=59, image_token_id=60, video_token_id=61)
# pixel_values: the same uint8 levels, normalised in float32 in a different order (see test_hf_parity).
PV_ATOL = 1e-5
LOSS_TOL = dict(rtol=1e-4, atol=1e-5)


def _text_config(vocab: int, **extra) -> dict:
    # head_dim 16 -> 8 rotary frequencies, split over (t, h, w) by mrope_section
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3], **extra}
    return dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                intermediate_size=64, vocab_size=vocab, rope_parameters=rope, bos_token_id=BOS, eos_token_id=EOS,
                pad_token_id=PAD)


def tiny_model(family: str, vocab: int = VOCAB, token_ids: dict | None = None) -> torch.nn.Module:
    """A randomly initialised model of ``family`` with one or two layers per tower, float32, in train mode;
    ``token_ids``: the config's vision token ids (default :data:`TOKENS`)."""
    torch.manual_seed(0)
    ids = TOKENS if token_ids is None else token_ids
    if family == "qwen2-vl":
        text = _text_config(vocab)
        text.pop("head_dim")
        config = Qwen2VLConfig(text_config=text, **ids,
                               vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2))
        model = Qwen2VLForConditionalGeneration(config)
    elif family == "qwen2.5-vl":
        text = _text_config(vocab)
        text.pop("head_dim")
        # window 56 px = 2x2 merged tokens, so the test images hold several windows; block 1 attends fully
        config = Qwen2_5_VLConfig(text_config=text, **ids, vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, window_size=56,
            fullatt_block_indexes=[1]))
        model = Qwen2_5_VLForConditionalGeneration(config)
    elif family == "qwen3-vl":
        config = Qwen3VLConfig(text_config=_text_config(vocab, mrope_interleaved=True), **ids, vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
            num_position_embeddings=64, deepstack_visual_indexes=[0]))
        model = Qwen3VLForConditionalGeneration(config)
    else:
        raise AssertionError(family)
    return model.float().train()


# Qwen3-VL's released min_pixels (256 x 256) would upscale these tiny images 20-fold; a smaller bound keeps it fast.
OVERRIDES = {"qwen2-vl": {}, "qwen2.5-vl": {}, "qwen3-vl": {"min_pixels": 64 * 64}}
FAMILIES = list(OVERRIDES)


def random_images(*shapes: tuple[int, int], seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8) for h, w in shapes]


def tokens(counts: list[list[tuple[int, int]]]) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids`` / ``attention_mask`` / ``labels`` ``[B, L]``: per sample some text and one
    ``<vision_start> <pad> * n <vision_end>`` run per ``(token_id, n)`` item."""
    seqs = []
    for b, items in enumerate(counts):
        seq = [BOS, 5 + b, 6]
        for token_id, n in items:
            seq += [TOKENS["vision_start_token_id"]] + [token_id] * n + [TOKENS["vision_end_token_id"], 7]
        seqs.append(seq + [8, 9 + b, EOS])
    length = max(map(len, seqs))
    input_ids = torch.full((len(seqs), length), PAD, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for i, s in enumerate(seqs):
        input_ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    return dict(input_ids=input_ids, attention_mask=mask, labels=input_ids.masked_fill(mask == 0, -100))


def merged_tokens(grid: torch.Tensor, merge: int = 2) -> list[int]:
    return (grid.prod(-1) // (merge * merge)).tolist()


def pack(items: list[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
    """The collator's pixel format: one flat uint8 buffer and the host sizes."""
    return torch.cat([x.reshape(-1) for x in items]), [tuple(x.shape) for x in items]


def chat_examples() -> tuple[list[torch.Tensor], list[dict]]:
    """Three random images and two chat examples with them (two images in the first, one in the second)."""
    images = random_images((50, 90), (120, 64), (90, 90))
    image, text = {"type": "image"}, lambda t: {"type": "text", "text": t}
    return images, [
        {"messages": [{"role": "user", "content": [image, image, text("compare")]},
                      {"role": "assistant", "content": "a cat and a dog"}], "images": images[:2]},
        {"messages": [{"role": "user", "content": [image, text("describe the picture")]},
                      {"role": "assistant", "content": "a coffee cup"}], "images": images[2:]},
    ]


def image_batch(images: list[torch.Tensor], grid: torch.Tensor, per_sample: list[int]) -> dict:
    """A collated batch: ``per_sample[b]`` images in sample ``b`` (``images`` in order), placeholder counts
    from ``grid``."""
    counts, n = merged_tokens(grid), iter(range(len(images)))
    batch = tokens([[(TOKENS["image_token_id"], counts[next(n)]) for _ in range(k)] for k in per_sample])
    batch["pixel_images"], batch["image_sizes"] = pack(images)
    batch["image_grid_thw"] = grid.clone()
    return batch


def stock_image_inputs(hf_pil, wrapper: QwenVLWithPreprocessor, images: list[torch.Tensor]) -> dict:
    """transformers' PIL-backend image processor (Pillow resize, as the default ``"pil"`` mode) with the
    wrapper's sizing and normalisation, on PIL images of the same pixels."""
    stock = hf_pil(wrapper.preprocessor.config)
    return stock(images=[Image.fromarray(x.permute(1, 2, 0).numpy()) for x in images], return_tensors="pt")


def stock_loss(model, batch: dict, **pixels) -> torch.Tensor:
    ids = batch["input_ids"]
    types = (ids == TOKENS["image_token_id"]).long() + 2 * (ids == TOKENS["video_token_id"]).long()
    keep = {k: batch[k] for k in ("input_ids", "attention_mask", "labels", "second_per_grid_ts") if k in batch}
    return model(**keep, mm_token_type_ids=types, **pixels).loss


def loss_and_grads(model, fn) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = fn()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


def assert_same_step(got, ref) -> None:
    (loss, grads), (ref_loss, ref_grads) = got, ref
    assert math.isfinite(loss.item())
    torch.testing.assert_close(loss, ref_loss, **LOSS_TOL)
    assert grads.keys() == ref_grads.keys() and len(grads) > 0
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], **LOSS_TOL, msg=lambda m, name=name: f"{name}: {m}")


@pytest.fixture(scope="module")
def qwen2():
    """A tiny Qwen2-VL model and a ragged set of images (two resized, one kept), shared by tests that leave the
    model's weights alone."""
    model = tiny_model("qwen2-vl")
    return model, random_images((50, 90), (70, 40), (56, 84))


def qwen2_batch(qwen2) -> tuple[QwenVLWithPreprocessor, dict]:
    model, images = qwen2
    wrapper = QwenVLWithPreprocessor(model)
    grid = wrapper.preprocessor(images).grid_thw
    return wrapper, image_batch(images, grid, [2, 1])


# ------------------------------------------------------------------------------------------- parity

@pytest.mark.parametrize("family", FAMILIES)
def test_training_step_equals_stock_processor(hf_pil, family):
    model = tiny_model(family)
    wrapper = QwenVLWithPreprocessor(model, **OVERRIDES[family])
    preset = qvp.presets.get_preset(family)
    assert wrapper.preprocessor.config == preset.image.replace(**OVERRIDES[family])
    assert wrapper.preprocessor.config.resize_mode == "pil"
    images = random_images((50, 90), (70, 40), (56, 84))
    stock = stock_image_inputs(hf_pil, wrapper, images)
    batch = image_batch(images, stock["image_grid_thw"], [1, 2])

    ours = wrapper.model_inputs(batch)
    assert torch.equal(ours["image_grid_thw"], stock["image_grid_thw"])
    assert ours["pixel_values"].dtype == torch.float32 and ours["pixel_values"].shape == stock["pixel_values"].shape
    torch.testing.assert_close(ours["pixel_values"], stock["pixel_values"], atol=PV_ATOL, rtol=0)

    ref = loss_and_grads(model, lambda: stock_loss(model, batch, pixel_values=stock["pixel_values"],
                                                   image_grid_thw=stock["image_grid_thw"]))
    assert_same_step(loss_and_grads(model, lambda: wrapper(**batch).loss), ref)
    # mm_token_type_ids derived from input_ids (above) or given: the same
    types = wrapper.mm_token_type_ids(batch["input_ids"])
    assert_same_step(loss_and_grads(model, lambda: wrapper(**batch, mm_token_type_ids=types).loss), ref)


@pytest.mark.parametrize("family", ["qwen2-vl", "qwen2.5-vl"])
def test_video_batch_equals_stock_video_processor(hf_pil, family):
    model = tiny_model(family)
    wrapper = QwenVLWithPreprocessor(model)
    g = torch.Generator().manual_seed(3)
    # sizes smart_resize keeps, so the stock torchvision resize is the identity on any CPU
    clips = [torch.randint(0, 256, (4, 3, 56, 84), generator=g, dtype=torch.uint8),
             torch.randint(0, 256, (3, 3, 56, 56), generator=g, dtype=torch.uint8)]
    images = random_images((50, 90))
    video = wrapper.preprocessor.video_config
    stock_v = Qwen2VLVideoProcessor(min_pixels=video.min_pixels, max_pixels=video.max_pixels)(
        videos=clips, cap_pixels_per_frame=False, return_tensors="pt")
    stock_i = stock_image_inputs(hf_pil, wrapper, images)
    v_counts, i_counts = merged_tokens(stock_v["video_grid_thw"]), merged_tokens(stock_i["image_grid_thw"])
    batch = tokens([[(TOKENS["video_token_id"], v_counts[0]), (TOKENS["image_token_id"], i_counts[0])],
                    [(TOKENS["video_token_id"], v_counts[1])]])
    batch["pixel_videos"], batch["video_sizes"] = pack(clips)
    batch["pixel_images"], batch["image_sizes"] = pack(images)
    if family == "qwen2.5-vl":
        batch["second_per_grid_ts"] = torch.tensor([1.0, 0.5])

    ours = wrapper.model_inputs(batch)
    assert torch.equal(ours["video_grid_thw"], stock_v["video_grid_thw"])
    torch.testing.assert_close(ours["pixel_values_videos"], stock_v["pixel_values_videos"], atol=PV_ATOL, rtol=0)
    ref = loss_and_grads(model, lambda: stock_loss(
        model, batch, pixel_values=stock_i["pixel_values"], image_grid_thw=stock_i["image_grid_thw"],
        pixel_values_videos=stock_v["pixel_values_videos"], video_grid_thw=stock_v["video_grid_thw"]))
    assert_same_step(loss_and_grads(model, lambda: wrapper(**batch).loss), ref)


def test_qwen3_video_batch_equals_stock_processor(hf_pil):
    """Qwen3-VL clips with their frame rates, through QwenVLCollator and the wrapper, against the stock
    ``Qwen3VLProcessor`` (its video processor, whole-clip pixel budget): the same input_ids, frame timestamps
    ("<0.5 seconds>" before each temporal patch) included, the same pixel values, loss and gradients."""
    from transformers.video_utils import VideoMetadata

    from qwen_vis_prep.collate import QwenVLCollator

    tok = word_tokenizer()
    model = tiny_model("qwen3-vl", vocab=len(tok), token_ids=vision_token_ids(tok))
    wrapper = QwenVLWithPreprocessor(model, **OVERRIDES["qwen3-vl"])
    cfg, video = wrapper.preprocessor.config, wrapper.preprocessor.video_config
    assert video.sizing == "qwen3-vl" and not video.cap_pixels_per_frame
    processor = transformers.Qwen3VLProcessor(
        image_processor=hf_pil(cfg), tokenizer=tok, chat_template=CHAT_TEMPLATE,
        video_processor=transformers.Qwen3VLVideoProcessor(
            size={"shortest_edge": video.min_pixels, "longest_edge": video.max_pixels}, patch_size=cfg.patch_size,
            temporal_patch_size=cfg.temporal_patch_size, merge_size=cfg.merge_size, image_mean=list(cfg.image_mean),
            image_std=list(cfg.image_std), cap_pixels_per_frame=False))
    g = torch.Generator().manual_seed(4)
    # sizes the Qwen3-VL video sizing keeps, so the stock torchvision resize is the identity on any CPU
    clips = [torch.randint(0, 256, (4, 3, 64, 96), generator=g, dtype=torch.uint8),
             torch.randint(0, 256, (6, 3, 64, 64), generator=g, dtype=torch.uint8)]
    meta = [dict(fps=10.0, total_num_frames=40, frames_indices=[0, 10, 20, 30]),
            dict(fps=24.0, total_num_frames=150, frames_indices=[0, 25, 50, 75, 100, 125])]
    images = random_images((70, 90))
    image, vid, text = {"type": "image"}, {"type": "video"}, lambda t: {"type": "text", "text": t}
    convs = [[{"role": "user", "content": [vid, image, text("describe the video")]},
              {"role": "assistant", "content": "a cat"}],
             [{"role": "user", "content": [text("compare"), vid]}, {"role": "assistant", "content": "a dog and a cat"}]]
    batch = QwenVLCollator(processor)([
        {"messages": convs[0], "images": images, "videos": clips[:1], "video_metadata": meta[:1]},
        {"messages": convs[1], "videos": clips[1:], "video_metadata": [VideoMetadata(**meta[1])]}])
    stock = processor(text=[processor.apply_chat_template(c, tokenize=False) for c in convs],
                      images=[Image.fromarray(x.permute(1, 2, 0).numpy()) for x in images], videos=clips,
                      video_metadata=[VideoMetadata(**m, height=c.shape[-2], width=c.shape[-1])
                                      for m, c in zip(meta, clips)],
                      do_sample_frames=False, padding=True, return_tensors="pt")
    for key in ("input_ids", "attention_mask", "mm_token_type_ids", "image_grid_thw", "video_grid_thw"):
        assert torch.equal(batch[key], stock[key]), key
    # one "<t seconds>" per temporal patch of every clip, and every word known to the tokenizer
    words = tok.convert_ids_to_tokens(stock["input_ids"].flatten().tolist())
    assert words.count("seconds") == int(stock["video_grid_thw"][:, 0].sum()) == 5
    assert "[UNK]" not in words

    ours = wrapper.model_inputs(batch)
    for key in ("pixel_values", "pixel_values_videos"):
        assert ours[key].shape == stock[key].shape, key
        torch.testing.assert_close(ours[key], stock[key], atol=PV_ATOL, rtol=0, msg=key)
    ref = loss_and_grads(model, lambda: model(**stock, labels=batch["labels"]).loss)
    assert_same_step(loss_and_grads(model, lambda: wrapper(**batch).loss), ref)
    assert any(n.startswith("model.visual.") for n in ref[1])


def test_text_only_batch_passes_through(qwen2):
    wrapper, _ = qwen2_batch(qwen2)
    model = wrapper.hf_model
    batch = tokens([[], []])
    ref = loss_and_grads(model, lambda: model(**batch).loss)
    assert_same_step(loss_and_grads(model, lambda: wrapper(**batch).loss), ref)
    # what a collator writes for a batch without images: an empty buffer, no sizes, an empty grid
    empty = dict(batch, pixel_images=torch.empty(0, dtype=torch.uint8), image_sizes=[],
                 image_grid_thw=torch.empty(0, 3, dtype=torch.int64))
    assert set(wrapper.model_inputs(empty)) == set(batch)
    assert_same_step(loss_and_grads(model, lambda: wrapper(**empty).loss), ref)


def test_planned_grid_must_match(qwen2):
    wrapper, batch = qwen2_batch(qwen2)
    wrong = batch["image_grid_thw"].clone()
    wrong[1, 1] += 2
    size = tuple(batch["image_sizes"][1])
    right = batch["image_grid_thw"][1].tolist()
    with pytest.raises(ValueError, match=re.escape(f"does not match its pixels: image 1 (sizes {size}) has grid "
                                                   f"{right}, the batch says {wrong[1].tolist()}")):
        wrapper.model_inputs(dict(batch, image_grid_thw=wrong))
    with pytest.raises(ValueError, match=f"does not match its pixels: 1 rows for {len(batch['image_sizes'])} images"):
        wrapper.model_inputs(dict(batch, image_grid_thw=wrong[:1]))
    with pytest.raises(ValueError, match="does not hold"):
        wrapper.model_inputs(dict(batch, pixel_images=batch["pixel_images"][:-1]))
    with pytest.raises(ValueError, match="no images"):
        wrapper.model_inputs({k: v for k, v in batch.items() if k != "pixel_images"})
    with pytest.raises(ValueError, match="patch_size=16 does not match"):
        QwenVLWithPreprocessor(wrapper.hf_model, "qwen3-vl")
    without_grid = {k: v for k, v in batch.items() if k != "image_grid_thw"}
    assert torch.equal(wrapper.model_inputs(without_grid)["image_grid_thw"], batch["image_grid_thw"])


SPECIAL = ["<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"]
# digits one by one and "< . seconds >": the frame timestamps Qwen3-VL's processor writes ("<0.5 seconds>")
WORDS = ("user assistant describe the picture video a cat dog and coffee cup compare seconds < > ."
         .split() + [str(d) for d in range(10)])
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% else %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
)


def word_tokenizer():
    """A word-level fast tokenizer over SPECIAL + WORDS, built offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "<|endoftext|>": 1, **{t: i + 2 for i, t in enumerate(SPECIAL + WORDS)}}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(),
                                                pre_tokenizers.Digits(individual_digits=True)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="<|endoftext|>",
                                                additional_special_tokens=SPECIAL)


def vision_token_ids(tokenizer) -> dict[str, int]:
    """The model config's vision token ids, as the tokenizer numbers them."""
    return {k: tokenizer.convert_tokens_to_ids(t) for k, t in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}


def tiny_processor(min_pixels: int, max_pixels: int):
    """A stock ``Qwen2VLProcessor`` (PIL-backend image processor) over :func:`word_tokenizer`."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return transformers.Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels),
        tokenizer=word_tokenizer(), video_processor=Qwen2VLVideoProcessor(min_pixels=min_pixels,
                                                                           max_pixels=max_pixels),
        chat_template=CHAT_TEMPLATE)


def test_collator_batch_equals_stock_processor():
    """End to end: QwenVLCollator + wrapper against the stock processor's pixel_values + model."""
    collate = pytest.importorskip("qwen_vis_prep.collate")
    budget = dict(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 12)
    processor = tiny_processor(**budget)
    tok = processor.tokenizer
    model = tiny_model("qwen2-vl", vocab=len(tok), token_ids=vision_token_ids(tok))
    wrapper = QwenVLWithPreprocessor(model, **budget)
    images, examples = chat_examples()
    batch = collate.QwenVLCollator(processor)(examples)
    assert isinstance(batch["pixel_images"], torch.Tensor) and batch["pixel_images"].dtype == torch.uint8

    texts = [processor.apply_chat_template(ex["messages"], tokenize=False) for ex in examples]
    stock = processor(text=texts, images=[Image.fromarray(x.permute(1, 2, 0).numpy()) for x in images],
                      padding=True, return_tensors="pt")
    assert torch.equal(batch["input_ids"], stock["input_ids"])
    assert torch.equal(batch["image_grid_thw"], stock["image_grid_thw"])
    ours = wrapper.model_inputs(batch)
    torch.testing.assert_close(ours["pixel_values"], stock["pixel_values"], atol=PV_ATOL, rtol=0)
    ref = loss_and_grads(model, lambda: model(
        input_ids=stock["input_ids"], attention_mask=stock["attention_mask"], labels=batch["labels"],
        mm_token_type_ids=stock["mm_token_type_ids"], pixel_values=stock["pixel_values"],
        image_grid_thw=stock["image_grid_thw"]).loss)
    assert_same_step(loss_and_grads(model, lambda: wrapper(**batch).loss), ref)


# --------------------------------------------------------------------------------------- the module

def test_state_dict_and_parameters_are_the_models():
    model = tiny_model("qwen2-vl")
    before = model.state_dict()
    wrapper = QwenVLWithPreprocessor(model)
    assert wrapper.preprocessor.state_dict() == {} and list(wrapper.preprocessor.parameters()) == []
    assert not any(isinstance(m, qvp.QwenVisionPreprocessor) for m in wrapper.modules())
    after = model.state_dict()
    assert list(after) == list(before)  # wrapping changed nothing
    assert all(after[k].data_ptr() == v.data_ptr() and torch.equal(after[k], v) for k, v in before.items())
    ours = wrapper.state_dict()
    assert list(ours) == list(before) and all(ours[k].data_ptr() == v.data_ptr() for k, v in before.items())
    assert [(n, id(p)) for n, p in wrapper.named_parameters()] == [(n, id(p)) for n, p in model.named_parameters()]
    assert [n for n, _ in wrapper.named_buffers()] == [n for n, _ in model.named_buffers()]
    assert wrapper.model is model.model and wrapper.lm_head is model.lm_head and wrapper.config is model.config
    # a stock model loads the wrapper's state_dict, and the wrapper a stock model's
    other = Qwen2VLForConditionalGeneration(model.config)
    other.load_state_dict(wrapper.state_dict(), strict=True)
    assert all(torch.equal(a, b) for a, b in zip(other.parameters(), model.parameters()))
    shifted = {k: v + 1 if v.is_floating_point() else v for k, v in other.state_dict().items()}
    wrapper.load_state_dict(shifted, strict=True)
    assert all(torch.equal(p, shifted[n]) for n, p in model.named_parameters())
    # replacing a top-level module of the model shows in the wrapper (the tables are shared)
    head = torch.nn.Linear(32, VOCAB, bias=False)
    model.lm_head = head
    assert wrapper.lm_head is head and any(p is head.weight for p in wrapper.parameters())
    # mode and dtype changes reach the model
    wrapper.eval()
    assert not model.training and not model.model.visual.training
    wrapper.train()
    assert model.training and model.model.visual.training
    wrapper.to(torch.bfloat16)
    assert model.lm_head.weight.dtype == torch.bfloat16
    with pytest.raises(AttributeError):
        wrapper.no_such_attribute  # noqa: B018


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing_enable` is deprecated")
def test_gradient_checkpointing(qwen2):
    model = tiny_model("qwen2-vl")
    wrapper = QwenVLWithPreprocessor(model)
    _, images = qwen2
    batch = image_batch(images, wrapper.preprocessor(images).grid_thw, [2, 1])
    ref = loss_and_grads(model, lambda: wrapper(**batch).loss)
    wrapper.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert model.model.language_model.gradient_checkpointing and model.model.visual.gradient_checkpointing
    assert_same_step(loss_and_grads(model, lambda: wrapper(**batch).loss), ref)


def test_autocast_and_bf16_tower(qwen2):
    model = tiny_model("qwen2-vl")
    wrapper = QwenVLWithPreprocessor(model)
    _, images = qwen2
    batch = image_batch(images, wrapper.preprocessor(images).grid_thw, [2, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert wrapper.model_inputs(batch)["pixel_values"].dtype == torch.float32  # fp32 tower under autocast
        loss = wrapper(**batch).loss
    loss.backward()
    assert math.isfinite(loss.item()) and model.lm_head.weight.grad is not None

    fp32 = wrapper.model_inputs(batch)["pixel_values"]
    wrapper.to(torch.bfloat16)
    bf16 = wrapper.model_inputs(batch)["pixel_values"]
    assert bf16.dtype == torch.bfloat16
    torch.testing.assert_close(bf16.float(), fp32, atol=0.02, rtol=0.01)  # bf16 rounding of [-2, 2] values
    assert math.isfinite(wrapper(**batch).loss.item())
    fixed = QwenVLWithPreprocessor(model, output_dtype=torch.float32)
    assert fixed.model_inputs(batch)["pixel_values"].dtype == torch.float32
    given = qvp.QwenVisionPreprocessor("qwen2-vl", output_dtype=torch.float16)
    assert QwenVLWithPreprocessor(model, given).model_inputs(batch)["pixel_values"].dtype == torch.float16
    assert QwenVLWithPreprocessor(model, resize_mode="float").preprocessor.config.resize_mode == "float"


@pytest.mark.slow  # ~11 s: compiles the whole tiny model
@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")
def test_torch_compile_same_loss(qwen2):
    torch._dynamo.reset()
    model = tiny_model("qwen2-vl")
    wrapper = QwenVLWithPreprocessor(model)
    _, images = qwen2
    batch = image_batch(images, wrapper.preprocessor(images).grid_thw, [2, 1])
    # the preprocessing in front of the model traces without a graph break ...
    eager = wrapper.model_inputs(batch)
    traced = torch.compile(wrapper.model_inputs, fullgraph=True, backend="aot_eager")(batch)
    assert traced.keys() == eager.keys() and all(torch.equal(traced[k], v) for k, v in eager.items())
    # ... and the whole wrapper compiles (the graph breaks are transformers' own; aot_eager keeps this fast)
    ref = loss_and_grads(model, lambda: wrapper(**batch).loss)
    compiled = torch.compile(wrapper, backend="aot_eager")
    assert_same_step(loss_and_grads(model, lambda: compiled(**batch).loss), ref)


@pytest.mark.slow
def test_compiled_wrapper_does_not_recompile_for_new_image_sizes():
    """Image sizes change every training batch. The compiled wrapper runs the preprocessing eagerly in front of
    the compiled model, so no frame reaches dynamo's recompile limit (past it, the whole forward would run
    eagerly; here that raises) and every loss equals the eager wrapper's."""
    torch._dynamo.reset()
    model = tiny_model("qwen2-vl")
    wrapper = QwenVLWithPreprocessor(model)
    compiled = torch.compile(wrapper, backend="eager")
    g = torch.Generator().manual_seed(0)
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        for i in range(torch._dynamo.config.recompile_limit + 2):
            sizes = [tuple(int(v) for v in torch.randint(40, 120, (2,), generator=g)) for _ in range(2)]
            images = random_images(*sizes, seed=i)
            batch = image_batch(images, wrapper.preprocessor(images).grid_thw, [1, 1])
            torch.testing.assert_close(compiled(**batch).loss, wrapper(**batch).loss, rtol=0, atol=1e-6)


def test_ddp_world_size_one(qwen2, tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    model = tiny_model("qwen2-vl")
    wrapper = QwenVLWithPreprocessor(model)
    _, images = qwen2
    batch = image_batch(images, wrapper.preprocessor(images).grid_thw, [2, 1])
    ref = loss_and_grads(model, lambda: wrapper(**batch).loss)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(wrapper)
        assert_same_step(loss_and_grads(model, lambda: ddp(**batch).loss), ref)
        assert list(ddp.state_dict()) == ["module." + k for k in model.state_dict()]
    finally:
        dist.destroy_process_group()


def _ddp_rank(rank: int, store: str, batches: list[dict], out_dir: str) -> None:
    """One rank of :func:`test_ddp_two_processes_equals_stock`: the tiny model wrapped, then DDP, one step on
    ``batches[rank]``; writes the loss and the synchronised gradients to ``out_dir/rank{rank}.pt``."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        model = tiny_model("qwen2-vl")
        ddp = DistributedDataParallel(QwenVLWithPreprocessor(model))
        loss, grads = loss_and_grads(model, lambda: ddp(**batches[rank]).loss)
        torch.save({"loss": loss, "grads": grads}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # ~11 s: two spawned processes import torch and transformers
def test_ddp_two_processes_equals_stock(hf_pil, tmp_path):
    """Two CPU processes (gloo), each with its own collated batch: each rank's loss is the stock pipeline's
    (the stock image processor's pixel_values into the same model) on that rank's batch, and after backward
    both ranks hold the same gradients, the mean of the two single-process stock gradients."""
    model = tiny_model("qwen2-vl")
    wrapper = QwenVLWithPreprocessor(model)
    batches, refs = [], []
    for seed, shapes, per_sample in ((0, [(50, 90), (70, 40)], [1, 1]), (1, [(56, 84), (40, 60), (90, 30)], [2, 1])):
        images = random_images(*shapes, seed=seed)
        stock = stock_image_inputs(hf_pil, wrapper, images)
        batch = image_batch(images, stock["image_grid_thw"], per_sample)
        refs.append(loss_and_grads(model, lambda: stock_loss(model, batch, pixel_values=stock["pixel_values"],
                                                             image_grid_thw=stock["image_grid_thw"])))
        batches.append(batch)
    assert not torch.allclose(refs[0][1]["lm_head.weight"], refs[1][1]["lm_head.weight"])  # the ranks differ

    torch.multiprocessing.spawn(_ddp_rank, args=(str(tmp_path / "store"), batches, str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for (loss, grads), (ref_loss, _) in zip(((r["loss"], r["grads"]) for r in ranks), refs):
        assert math.isfinite(loss.item())
        torch.testing.assert_close(loss, ref_loss, **LOSS_TOL)
        assert grads.keys() == refs[0][1].keys() == refs[1][1].keys()
    for name, g in ranks[0]["grads"].items():
        assert torch.equal(g, ranks[1]["grads"][name]), name  # allreduced: the same on every rank
        mean = (refs[0][1][name] + refs[1][1][name]) / 2
        torch.testing.assert_close(g, mean, **LOSS_TOL, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.filterwarnings("ignore:FSDP2-wrapped module")  # transformers returns a view; nothing here edits it
def test_fsdp2_world_size_one(qwen2, tmp_path):
    """FSDP2 (``fully_shard``, gloo on the CPU, world size 1) shards the wrapped model's parameters; the
    preprocessor has none, and the step equals the unsharded one."""
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    model = tiny_model("qwen2-vl")
    wrapper = QwenVLWithPreprocessor(model)
    _, images = qwen2
    batch = image_batch(images, wrapper.preprocessor(images).grid_thw, [2, 1])
    with torch.no_grad():
        ref_loss = float(wrapper(**batch).loss)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        fully_shard(model)
        loss = wrapper(**batch).loss
        loss.backward()
        assert loss.item() == pytest.approx(ref_loss, rel=1e-5)
        assert all(p.grad is not None for p in wrapper.parameters() if p.requires_grad)
        assert set(wrapper.state_dict()) == set(tiny_model("qwen2-vl").state_dict())
    finally:
        dist.destroy_process_group()


def test_trainer_steps(qwen2, tmp_path):
    pytest.importorskip("accelerate")  # transformers.Trainer needs it
    model = tiny_model("qwen2-vl")
    wrapper = QwenVLWithPreprocessor(model)
    _, images = qwen2
    counts = merged_tokens(wrapper.preprocessor(images).grid_thw)
    examples = [{"image": img, "tokens": n} for img, n in zip(images, counts)] * 2

    def collate(rows: list[dict]) -> dict:
        batch = tokens([[(TOKENS["image_token_id"], r["tokens"])] for r in rows])
        batch["pixel_images"], batch["image_sizes"] = pack([r["image"] for r in rows])
        return batch

    before = model.lm_head.weight.detach().clone()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, learning_rate=1e-2,
        remove_unused_columns=False, report_to=[], save_strategy="no", logging_steps=1, use_cpu=True,
        dataloader_num_workers=0, disable_tqdm=True)
    trainer = transformers.Trainer(model=wrapper, args=args, train_dataset=examples, data_collator=collate)
    result = trainer.train()
    assert math.isfinite(result.training_loss)
    assert not torch.equal(before, model.lm_head.weight)
    # the weights file Trainer writes for a non-PreTrainedModel holds the model's own keys
    from safetensors.torch import load_file

    trainer.save_model(str(tmp_path / "saved"))
    stock = Qwen2VLForConditionalGeneration(model.config)
    stock.load_state_dict(load_file(str(tmp_path / "saved" / "model.safetensors")), strict=True)
    assert torch.equal(stock.lm_head.weight, model.lm_head.weight)
    wrapper.eval()
    with torch.no_grad():
        out = wrapper.generate(**collate(examples[:1]), max_new_tokens=2, do_sample=False)
    assert out.shape[0] == 1 and out.shape[1] >= collate(examples[:1])["input_ids"].shape[1] + 1


def assistant_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor, tokenizer) -> torch.Tensor:
    """Labels on the tokens of assistant turns (after ``<|im_start|> assistant`` up to and including
    ``<|im_end|>``), -100 elsewhere: the training target, computed token by token on stock input_ids."""
    start, end, role = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>", "assistant"])
    labels = torch.full_like(input_ids, -100)
    for b, row in enumerate(input_ids.tolist()):
        inside = False
        for i, t in enumerate(row):
            if inside and attention_mask[b, i]:
                labels[b, i] = t
            inside = (inside and t != end) or (i > 0 and row[i - 1] == start and t == role)
    return labels


def test_trainer_with_collator_equals_stock_trainer(tmp_path):
    """transformers.Trainer with QwenVLCollator and the wrapper on 'messages' + 'images' examples trains the
    model exactly as Trainer with the stock processor's pixel_values and the stock model does: the same loss
    at every step (the first also the stock model's own loss on that batch) and the same weights after."""
    pytest.importorskip("accelerate")  # transformers.Trainer needs it
    from qwen_vis_prep.collate import QwenVLCollator

    budget = dict(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 12)
    processor = tiny_processor(**budget)
    tok = processor.tokenizer
    images, examples = chat_examples()

    def stock_collate(rows: list[dict]) -> dict:
        out = processor(text=[processor.apply_chat_template(r["messages"], tokenize=False) for r in rows],
                        images=[Image.fromarray(x.permute(1, 2, 0).numpy()) for r in rows for x in r["images"]],
                        padding=True, return_tensors="pt")
        return dict(out, labels=assistant_labels(out["input_ids"], out["attention_mask"], tok))

    def train(model, collate, name):
        # one batch of both examples per step (in the sampler's order: the loss does not depend on it); plain
        # SGD, whose update is linear in the gradients (Adam's would magnify float noise in near-zero ones)
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path / name), max_steps=2, per_device_train_batch_size=2, learning_rate=1e-1,
            optim="sgd", remove_unused_columns=False, report_to=[], save_strategy="no", logging_steps=1, use_cpu=True,
            dataloader_num_workers=0, disable_tqdm=True)
        trainer = transformers.Trainer(model=model, args=args, train_dataset=examples, data_collator=collate)
        result = trainer.train()
        assert result.global_step == 2
        return [h["loss"] for h in trainer.state.log_history if "loss" in h]

    ids = vision_token_ids(tok)
    model, stock_model = (tiny_model("qwen2-vl", vocab=len(tok), token_ids=ids) for _ in range(2))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        first = stock_model(**stock_collate(examples)).loss.item()
    collator = QwenVLCollator(processor)
    assert torch.equal(collator(examples)["labels"], stock_collate(examples)["labels"])
    losses = train(QwenVLWithPreprocessor(model, **budget), collator, "ours")
    stock_losses = train(stock_model, stock_collate, "stock")
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert losses == pytest.approx(stock_losses, rel=1e-4, abs=1e-5)
    assert losses[0] == pytest.approx(first, rel=1e-4, abs=1e-5)
    after, stock_after = dict(model.named_parameters()), dict(stock_model.named_parameters())
    for name in ("lm_head.weight", "model.visual.patch_embed.proj.weight"):
        assert not torch.equal(before[name], after[name]), name  # the step reached the vision tower
    for name, p in after.items():
        torch.testing.assert_close(p, stock_after[name], rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.slow  # ~7 s: a subprocess with DataLoader workers
def test_example_finetune_runs_and_learns():
    """``examples/finetune_tiny.py`` (README's training example) runs as written and its loss goes down."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parent.parent / "examples" / "finetune_tiny.py"
    run = subprocess.run([sys.executable, str(script), "--device", "cpu"], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    losses = [float(v) for v in re.findall(r"loss ([0-9.]+)", run.stdout)]
    assert len(losses) >= 4 and losses[-1] < losses[0], run.stdout


# --------------------------------------------------------------------------------------------- CUDA

CUDA_SHAPES = ((50, 90), (70, 40), (240, 320), (56, 84))  # up-, down-scaled and kept sizes
CUDA_BUDGET = dict(max_pixels=28 * 28 * 64)


def _on_cuda(batch: dict, keys=("input_ids", "attention_mask", "labels")) -> dict:
    return {k: v.cuda() if k in keys else v for k, v in batch.items()}


@pytest.mark.cuda
@pytest.mark.parametrize("resize_mode", ["pil", "float"])
def test_cuda_model_inputs_from_pinned_buffer_without_sync(resize_mode):
    """The collator's pinned host buffer into a CUDA model: after a first call, ``model_inputs`` syncs nothing
    (non-blocking copy, warm kernels, the grid uploaded from pinned memory) and gives the CPU wrapper's
    pixel_values bit for bit in the same resize mode."""
    images = random_images(*CUDA_SHAPES, seed=7)
    cpu = QwenVLWithPreprocessor(tiny_model("qwen2-vl"), resize_mode=resize_mode, **CUDA_BUDGET)
    batch = image_batch(images, cpu.preprocessor(images).grid_thw, [3, 1])
    ref = cpu.model_inputs(batch)
    gpu = QwenVLWithPreprocessor(tiny_model("qwen2-vl").cuda(), resize_mode=resize_mode, **CUDA_BUDGET)
    pinned = dict(_on_cuda(batch), pixel_images=batch["pixel_images"].pin_memory())
    assert pinned["pixel_images"].is_pinned() and pinned["image_grid_thw"].device.type == "cpu"
    gpu.model_inputs(pinned)  # warm: kernels compiled, filter tables on the device
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = gpu.model_inputs(pinned)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out["pixel_values"].is_cuda and out["image_grid_thw"].is_cuda
    assert out["pixel_values"].dtype == ref["pixel_values"].dtype == torch.float32
    assert torch.equal(out["pixel_values"].cpu(), ref["pixel_values"])
    assert torch.equal(out["image_grid_thw"].cpu(), ref["image_grid_thw"])
    assert torch.equal(out["mm_token_type_ids"].cpu(), ref["mm_token_type_ids"])


@pytest.mark.cuda
def test_cuda_graph_capture_of_model_inputs():
    """``model_inputs`` on a batch already on the GPU (pixel buffer, planned grid, tokens), warmed on a side
    stream, is captured in a CUDA graph; replaying it after new pixels are copied into the captured buffer
    gives an eager call's pixel_values on those pixels."""
    images = random_images(*CUDA_SHAPES, seed=8)
    wrapper = QwenVLWithPreprocessor(tiny_model("qwen2-vl").cuda(), **CUDA_BUDGET)
    grid = wrapper.preprocessor(images).grid_thw
    batch = image_batch(images, grid, [2, 2])
    static = _on_cuda(batch, keys=("input_ids", "attention_mask", "labels", "pixel_images", "image_grid_thw"))
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            wrapper.model_inputs(static)  # warm-up outside capture
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = wrapper.model_inputs(static)
    fresh = pack(random_images(*CUDA_SHAPES, seed=9))[0].cuda()
    old = wrapper.model_inputs(static)["pixel_values"]
    static["pixel_images"].copy_(fresh)
    graph.replay()
    torch.cuda.synchronize()
    eager = wrapper.model_inputs(dict(static, pixel_images=fresh))
    assert not torch.equal(old, eager["pixel_values"])  # the replay has new pixels to get right
    assert torch.equal(captured["pixel_values"], eager["pixel_values"])
    assert torch.equal(captured["image_grid_thw"].cpu(), grid)
    assert torch.equal(captured["mm_token_type_ids"], eager["mm_token_type_ids"])
