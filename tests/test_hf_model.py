"""``QwenVLWithPreprocessor`` against the stock pipeline: tiny randomly initialised transformers Qwen2-VL,
Qwen2.5-VL and Qwen3-VL models fed ``pixel_values`` from transformers' own processors must give the loss and
gradients the wrapper gives from the raw uint8 pixels; and the wrapper must behave as the model under
``state_dict``, gradient checkpointing, autocast / bf16, ``torch.compile``, DDP and ``transformers.Trainer``."""

from __future__ import annotations

import logging
import math

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
    wrong[0, 1] += 2
    with pytest.raises(ValueError, match="differs from the preprocessor's"):
        wrapper.model_inputs(dict(batch, image_grid_thw=wrong))
    with pytest.raises(ValueError, match="does not hold"):
        wrapper.model_inputs(dict(batch, pixel_images=batch["pixel_images"][:-1]))
    with pytest.raises(ValueError, match="no images"):
        wrapper.model_inputs({k: v for k, v in batch.items() if k != "pixel_images"})
    with pytest.raises(ValueError, match="patch_size=16 does not match"):
        QwenVLWithPreprocessor(wrapper.hf_model, "qwen3-vl")
    without_grid = {k: v for k, v in batch.items() if k != "image_grid_thw"}
    assert torch.equal(wrapper.model_inputs(without_grid)["image_grid_thw"], batch["image_grid_thw"])


SPECIAL = ["<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"]
WORDS = "user assistant describe the picture a cat dog and coffee cup compare".split()
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
)


def tiny_processor(min_pixels: int, max_pixels: int):
    """A stock ``Qwen2VLProcessor`` (PIL-backend image processor) over a word-level tokenizer built offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    vocab = {"[UNK]": 0, "<|endoftext|>": 1, **{t: i + 2 for i, t in enumerate(SPECIAL + WORDS)}}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]",
                                                     pad_token="<|endoftext|>", additional_special_tokens=SPECIAL)
    return transformers.Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels), tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(min_pixels=min_pixels, max_pixels=max_pixels),
        chat_template=CHAT_TEMPLATE)


def test_collator_batch_equals_stock_processor():
    """End to end: QwenVLCollator + wrapper against the stock processor's pixel_values + model."""
    collate = pytest.importorskip("qwen_vis_prep.collate")
    budget = dict(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 12)
    processor = tiny_processor(**budget)
    tok = processor.tokenizer
    ids = {k: tok.convert_tokens_to_ids(t) for k, t in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    model = tiny_model("qwen2-vl", vocab=len(tok), token_ids=ids)
    wrapper = QwenVLWithPreprocessor(model, **budget)
    images = random_images((50, 90), (120, 64), (90, 90))
    image, text = {"type": "image"}, lambda t: {"type": "text", "text": t}
    examples = [
        {"messages": [{"role": "user", "content": [image, image, text("compare")]},
                      {"role": "assistant", "content": "a cat and a dog"}], "images": images[:2]},
        {"messages": [{"role": "user", "content": [image, text("describe the picture")]},
                      {"role": "assistant", "content": "a coffee cup"}], "images": images[2:]},
    ]
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
