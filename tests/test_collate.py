"""QwenVLCollator: input_ids, masks, grids and second_per_grid_ts identical to the stock transformers processor
called on the same texts and pixels (Qwen2-VL, Qwen2.5-VL, Qwen3-VL), assistant-only labels, the flat uint8
pixel buffers, and errors for bad examples. The tokenizer is built offline from a tiny word-level vocabulary."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

import PIL.Image  # noqa: E402
import transformers  # noqa: E402
from transformers.video_utils import VideoMetadata  # noqa: E402

from qwen_vis_prep.collate import QwenVLCollator, pack_pixels, unpack_pixels  # noqa: E402
from qwen_vis_prep.video_decode import DecodedVideo  # noqa: E402
from qwen_vis_prep.video_decode import VideoMetadata as DecodedMetadata  # noqa: E402

SPECIAL = ["<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"]
WORDS = ("user assistant system you are helpful describe the picture and video compare it with this one a cat dog "
         "what is in seconds < > .").split() + [str(d) for d in range(10)]
TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% else %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
VIDEO = "<|vision_start|><|video_pad|><|vision_end|>"
FAMILIES = ["Qwen2VLProcessor", "Qwen2_5_VLProcessor", "Qwen3VLProcessor"]


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "<|endoftext|>": 1, **{t: i + 2 for i, t in enumerate(SPECIAL + WORDS)}}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(),
                                                pre_tokenizers.Digits(individual_digits=True)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="<|endoftext|>",
                                   additional_special_tokens=SPECIAL)


def _make_processor(cls_name, tokenizer):
    """The stock processor with small pixel budgets (Qwen3-VL: 16-pixel patches, whole-clip budget)."""
    if cls_name == "Qwen3VLProcessor":
        ip = transformers.Qwen2VLImageProcessor(patch_size=16, min_pixels=32 * 32 * 4, max_pixels=32 * 32 * 12,
                                                image_mean=[0.5] * 3, image_std=[0.5] * 3)
        vp = transformers.Qwen3VLVideoProcessor(size={"shortest_edge": 32 * 32 * 4, "longest_edge": 32 * 32 * 40},
                                                cap_pixels_per_frame=False)
    else:
        ip = transformers.Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 12)
        vp = transformers.Qwen2VLVideoProcessor(min_pixels=28 * 28 * 2, max_pixels=28 * 28 * 8,
                                                cap_pixels_per_frame=False)
    processor = getattr(transformers, cls_name)(image_processor=ip, tokenizer=tokenizer, video_processor=vp)
    processor.chat_template = TEMPLATE
    return processor


@pytest.fixture(scope="module", params=FAMILIES)
def processor(request, tokenizer):
    return _make_processor(request.param, tokenizer)


@pytest.fixture(scope="module")
def qwen2(tokenizer):
    return _make_processor("Qwen2VLProcessor", tokenizer)


def _image(h, w, seed):
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _clip(t, h, w, seed):
    return torch.randint(0, 256, (t, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


class Clip:
    """A clip with its source metadata, given to the collator in one of three ways: as a DecodedVideo, with an
    explicit ``video_metadata`` dict, or bare (no metadata: every frame of a video of unknown rate)."""

    def __init__(self, frames, *, fps=None, total=None, indices=None, form="decoded"):
        self.frames, self.fps, self.total, self.indices, self.form = frames, fps, total, indices, form

    def ours(self):
        """(video entry, video_metadata entry) for the collator."""
        t, _, h, w = self.frames.shape
        if self.form == "bare":
            return self.frames, None
        if self.form == "dict":
            return self.frames, {"fps": self.fps, "total_num_frames": self.total, "frames_indices": self.indices}
        meta = DecodedMetadata(source="clip.mp4", fps=self.fps, duration=self.total / self.fps,
                               total_frames=self.total, indices=list(self.indices),
                               timestamps=[i / self.fps for i in self.indices], height=h, width=w, rotation=0)
        return DecodedVideo(self.frames, meta), None

    def stock(self):
        """A fresh transformers VideoMetadata (the processors mutate it), as the stock pipeline would have."""
        t, _, h, w = self.frames.shape
        if self.form == "bare":
            return VideoMetadata(total_num_frames=t, fps=None, frames_indices=list(range(t)), height=h, width=w)
        return VideoMetadata(total_num_frames=self.total, fps=self.fps, frames_indices=list(self.indices),
                             height=h, width=w)


CLIPS = [Clip(_clip(4, 48, 64, 10), fps=24.0, total=50, indices=[0, 16, 33, 49]),
         Clip(_clip(6, 60, 40, 11), fps=30.0, total=90, indices=[0, 15, 30, 45, 60, 75], form="dict"),
         Clip(_clip(5, 40, 90, 12), form="bare"),
         Clip(_clip(3, 70, 70, 13), fps=10.0, total=31, indices=[0, 15, 30])]


def _example(text, images=(), clips=()):
    ex = {"text": text}
    if images:
        ex["images"] = list(images)
    if clips:
        pairs = [c.ours() for c in clips]
        ex["videos"] = [v for v, _ in pairs]
        if any(m is not None for _, m in pairs):
            ex["video_metadata"] = [m for _, m in pairs]
    return ex


def _chat(*turns):
    """Messages from (role, items) turns; items are strings or "image" / "video"."""
    def item(x):
        return {"type": x} if x in ("image", "video") else {"type": "text", "text": x}
    return [{"role": role, "content": [item(x) for x in items]} for role, items in turns]


def _cases():
    a, b, c, d = _image(40, 60, 0), _image(100, 70, 1), _image(33, 120, 2), _image(200, 150, 3)
    return {
        "images": [(f"{IMAGE} describe the picture", [a], []),
                   (f"compare {IMAGE} with {IMAGE}", [b, c], [])],
        "videos": [(f"describe {VIDEO} the video", [], [CLIPS[0]]),
                   (f"compare {VIDEO} with {VIDEO}", [], [CLIPS[1], CLIPS[2]])],
        "mixture": [(f"{IMAGE} and {VIDEO} compare", [d], [CLIPS[3]]),
                    (f"{VIDEO} {IMAGE} {IMAGE}", [a, b], [CLIPS[0]])],
        "ragged": [(f"{IMAGE} {IMAGE} {IMAGE} what is in it", [a, b, c], []),
                   ("a cat with no picture", [], []),
                   (f"this one {IMAGE}", [d], []),
                   (f"{VIDEO} {VIDEO} {IMAGE}", [c], [CLIPS[2], CLIPS[3]])],
    }


def _stock(processor, texts, images, clips, **kwargs):
    inputs = dict(text=texts, padding=True, return_tensors="pt", **kwargs)
    if images:
        inputs["images"] = images
    if clips:
        inputs.update(videos=[c.frames for c in clips], video_metadata=[c.stock() for c in clips],
                      do_sample_frames=False)
    return processor(**inputs)


def _assert_same_as_stock(batch, stock):
    for key in stock:
        if key in ("pixel_values", "pixel_values_videos"):
            continue
        assert key in batch, key
        assert torch.equal(torch.as_tensor(batch[key]), torch.as_tensor(stock[key])), key
    own = {"labels", "pixel_images", "image_sizes", "pixel_videos", "video_sizes"}
    assert set(batch) - own == set(stock) - {"pixel_values", "pixel_values_videos"}
    for key in ("image_grid_thw", "video_grid_thw"):
        if key in batch:
            assert batch[key].dtype == torch.int64


@pytest.mark.parametrize("case", ["images", "videos", "mixture", "ragged"])
def test_matches_stock_processor(processor, case):
    rows = _cases()[case]
    batch = QwenVLCollator(processor)([_example(*row) for row in rows])
    stock = _stock(processor, [r[0] for r in rows], [x for r in rows for x in r[1]], [c for r in rows for c in r[2]])
    _assert_same_as_stock(batch, stock)
    assert ("pixel_images" in batch) == (case != "videos") and ("pixel_videos" in batch) == (case != "images")
    if "video_grid_thw" in batch and type(processor).__name__ == "Qwen3VLProcessor":
        assert "seconds" in processor.tokenizer.decode(batch["input_ids"].flatten())
    if "video_grid_thw" in batch and type(processor).__name__ == "Qwen2_5_VLProcessor":
        assert batch["second_per_grid_ts"].numel() == len(batch["video_sizes"])


def _conversations():
    return [
        _chat(("system", ["you are helpful"]), ("user", ["image", "what is in it"]), ("assistant", ["a cat"]),
              ("user", ["video", "and this one"]), ("assistant", ["it is", "image", "a dog"])),
        _chat(("user", ["describe", "image"]), ("assistant", ["this one is a cat ."])),
    ]


def test_chat_conversations_match_stock(processor):
    a, b, c = _image(50, 50, 4), _image(80, 60, 5), _image(64, 30, 6)
    convs = _conversations()
    examples = [{"messages": convs[0], "images": [a, b], "videos": [CLIPS[0].ours()[0]]},
                {"messages": convs[1], "images": [c]}]
    batch = QwenVLCollator(processor)(examples)
    texts = [processor.apply_chat_template(m, tokenize=False) for m in convs]
    _assert_same_as_stock(batch, _stock(processor, texts, [a, b, c], [CLIPS[0]]))


# TEMPLATE with the assistant turns (content and <|im_end|>) in {% generation %} blocks: the same text, and the
# tokenizer's own return_assistant_tokens_mask then marks the tokens an assistant-only loss trains on.
TAGGED_TEMPLATE = (
    "{% macro body(message) %}{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% else %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}{% endmacro %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ body(message) }}<|im_end|>{% endgeneration %}"
    "{% else %}{{ body(message) }}<|im_end|>{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _reference_labels(processor, conversations, stock, ignore_index=-100):
    """``[B, L]`` labels from transformers alone: the tokenizer's assistant mask of each conversation (rendered
    with TAGGED_TEMPLATE, one ``<|image_pad|>`` per image) with every image's pad token repeated to the stock
    processor's count, laid on the stock processor's right-padded ``input_ids``."""
    tok = processor.tokenizer
    pad_id = tok.convert_tokens_to_ids("<|image_pad|>")
    counts = iter((stock["image_grid_thw"].prod(-1) // processor.image_processor.merge_size ** 2).tolist()
                  if "image_grid_thw" in stock else [])
    labels = torch.full_like(stock["input_ids"], ignore_index)
    for row, conv in enumerate(conversations):
        assert tok.apply_chat_template(conv, chat_template=TAGGED_TEMPLATE, tokenize=False) == \
            processor.apply_chat_template(conv, tokenize=False)
        out = tok.apply_chat_template(conv, chat_template=TAGGED_TEMPLATE, tokenize=True, return_dict=True,
                                      return_assistant_tokens_mask=True)
        ids, keep = [], []
        for t, m in zip(out["input_ids"], out["assistant_masks"]):
            n = next(counts) if t == pad_id else 1
            ids += [t] * n
            keep += [bool(m)] * n
        assert stock["input_ids"][row, :len(ids)].tolist() == ids
        assert stock["attention_mask"][row].sum() == len(ids)
        ids_t, keep_t = torch.tensor(ids), torch.tensor(keep)
        labels[row, :len(ids)] = torch.where(keep_t, ids_t, torch.full_like(ids_t, ignore_index))
    assert next(counts, None) is None
    return labels


@pytest.mark.parametrize("mix", ["text-only", "with-images"])
def test_conversations_without_images_match_stock(processor, mix):
    """'messages' conversations with no image, alone in a batch or next to ones with images: the stock
    processor's input_ids / attention_mask (and other text keys), and labels on exactly the assistant tokens
    the tokenizer's own assistant mask marks."""
    plain = [_chat(("user", ["what is in it"]), ("assistant", ["a cat"])),
             _chat(("system", ["you are helpful"]), ("user", ["describe the video"]),
                   ("assistant", ["a dog"]), ("user", ["and this one"]), ("assistant", ["it is a cat ."]))]
    if mix == "text-only":
        convs, images = plain, []
    else:
        convs = [plain[0], _chat(("user", ["image", "compare it with", "image"]), ("assistant", ["a dog"])),
                 plain[1], _chat(("user", ["describe", "image"]), ("assistant", ["a cat"]))]
        images = [_image(50, 70, 1), _image(100, 40, 2), _image(64, 64, 3)]
    examples = [{"messages": c} for c in convs]
    if images:
        examples[1]["images"], examples[3]["images"] = images[:2], images[2:]
    batch = QwenVLCollator(processor)(examples)
    stock = _stock(processor, [processor.apply_chat_template(c, tokenize=False) for c in convs], images, [])
    _assert_same_as_stock(batch, stock)
    assert ("pixel_images" in batch) == bool(images) and "pixel_videos" not in batch
    if not images:
        assert not {"image_grid_thw", "image_sizes"} & set(batch)
    assert (stock["attention_mask"] == 0).any()  # ragged rows: padding is covered
    expected = _reference_labels(processor, convs, stock)
    assert (expected != -100).sum(1).gt(0).all()
    assert torch.equal(batch["labels"], expected)


def _spans(labels_row, ignore_index, tokenizer):
    """The kept (not ignore_index) runs of a labels row, as token strings."""
    spans, run = [], []
    for t in labels_row.tolist() + [ignore_index]:
        if t == ignore_index:
            if run:
                spans.append(tokenizer.convert_ids_to_tokens(run))
            run = []
        else:
            run.append(t)
    return spans


def test_labels_cover_assistant_turns_only(processor):
    tok = processor.tokenizer
    convs = _conversations()
    examples = [{"messages": convs[0], "images": [_image(50, 50, 4), _image(80, 60, 5)],
                 "videos": [CLIPS[0].ours()[0]]},
                {"messages": convs[1], "images": [_image(64, 30, 6)]}]
    batch = QwenVLCollator(processor)(examples)
    labels, ids, mask = batch["labels"], batch["input_ids"], batch["attention_mask"]
    assert _spans(labels[0], -100, tok) == [["a", "cat", "<|im_end|>"], ["it", "is"], ["a", "dog", "<|im_end|>"]]
    assert _spans(labels[1], -100, tok) == [["this", "one", "is", "a", "cat", ".", "<|im_end|>"]]
    kept = labels != -100
    assert torch.equal(labels[kept], ids[kept])
    assert (mask[1] == 0).any() and (labels[mask == 0] == -100).all()
    assert tok.decode(labels[1][labels[1] != -100]) == "this one is a cat . <|im_end|>"


def test_label_mask_none_callable_and_ignore_index(qwen2):
    tok = qwen2.tokenizer
    examples = [_example(f"{IMAGE} a cat", [_image(40, 60, 0)]), _example("a dog")]
    batch = QwenVLCollator(qwen2, label_mask="none", ignore_index=-1)(examples)
    vision_ids = tok.convert_tokens_to_ids(["<|image_pad|>", "<|vision_start|>", "<|vision_end|>"])
    expected = batch["input_ids"].clone()
    expected[torch.isin(expected, torch.tensor(vision_ids)) | (batch["attention_mask"] == 0)] = -1
    assert torch.equal(batch["labels"], expected)
    assert _spans(batch["labels"][0], -1, tok) == [["a", "cat"]]

    def first_token(b):
        keep = torch.zeros_like(b["input_ids"], dtype=torch.bool)
        keep[:, -2:] = True
        return keep

    batch = QwenVLCollator(qwen2, label_mask=first_token)(examples)
    assert _spans(batch["labels"][0], -100, tok) == [["a", "cat"]] and (batch["labels"][1] == -100).all()


def test_pixels_flat_uint8_and_unpacked_as_views(qwen2):
    images = [_image(40, 60, 0), _image(100, 70, 1), _image(33, 120, 2)]
    clips = [CLIPS[0], CLIPS[2]]
    examples = [_example(f"{IMAGE} {VIDEO}", images[:1], clips[:1]),
                _example(f"{IMAGE} {IMAGE} {VIDEO}", images[1:], clips[1:])]
    batch = QwenVLCollator(qwen2)(examples)
    for flat, sizes, originals in ((batch["pixel_images"], batch["image_sizes"], images),
                                   (batch["pixel_videos"], batch["video_sizes"], [c.frames for c in clips])):
        assert flat.dtype == torch.uint8 and flat.dim() == 1 and flat.is_contiguous()
        assert isinstance(sizes, list) and sizes == [tuple(x.shape) for x in originals]
        parts = unpack_pixels(flat, sizes)
        assert all(torch.equal(p, x) for p, x in zip(parts, originals))
        assert all(p.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr() for p in parts)
    text_only = QwenVLCollator(qwen2)([_example("a cat"), _example("a dog is in it")])
    assert not {"pixel_images", "image_sizes", "image_grid_thw", "pixel_videos", "video_sizes",
                "video_grid_thw"} & set(text_only)
    with pytest.raises(ValueError, match="does not hold the 6 values"):
        unpack_pixels(torch.zeros(5, dtype=torch.uint8), [(1, 2, 3)])
    assert pack_pixels([])[0].numel() == 0


def _pack_in_worker(items):
    flat, sizes = pack_pixels(items[0])
    return flat, sizes, flat.is_shared()


def test_packed_pixels_are_written_in_shared_memory_in_workers():
    """In a DataLoader worker the buffer is allocated in shared memory (as ``default_collate`` does), so
    sending it to the main process copies nothing; in the main process it is ordinary memory."""
    images = [_image(40, 60, 0), _image(33, 120, 2)]
    assert not pack_pixels(images)[0].is_shared()
    loader = torch.utils.data.DataLoader([images], batch_size=1, num_workers=1, collate_fn=_pack_in_worker)
    flat, sizes, shared_in_worker = next(iter(loader))
    assert shared_in_worker
    assert all(torch.equal(p, x) for p, x in zip(unpack_pixels(flat, sizes), images))


def test_image_and_clip_input_forms(qwen2):
    chw = _image(45, 67, 7)
    hwc = chw.permute(1, 2, 0).numpy().copy()
    forms = [chw, hwc, PIL.Image.fromarray(hwc), torch.from_numpy(hwc).permute(2, 0, 1)]
    clip = CLIPS[2].frames
    examples = [_example(f"{IMAGE} a cat", [x]) for x in forms]
    examples.append({"text": f"{VIDEO} a cat", "videos": [clip.permute(0, 2, 3, 1).numpy().copy()]})
    batch = QwenVLCollator(qwen2)(examples)
    parts = unpack_pixels(batch["pixel_images"], batch["image_sizes"])
    assert all(torch.equal(p, chw) for p in parts)
    assert torch.equal(unpack_pixels(batch["pixel_videos"], batch["video_sizes"])[0], clip)
    assert len(set(map(tuple, batch["input_ids"][:4].tolist()))) == 1


def test_max_length_truncates_like_stock_and_refuses_to_cut_vision(qwen2):
    rows = [(f"{IMAGE} a cat is in the picture and it is a cat", [_image(40, 60, 0)]), ("a dog", [])]
    examples = [_example(text, imgs) for text, imgs in rows]
    full = QwenVLCollator(qwen2)(examples)["input_ids"].shape[1]
    batch = QwenVLCollator(qwen2, max_length=full - 3)(examples)
    stock = _stock(qwen2, [r[0] for r in rows], [x for r in rows for x in r[1]], [], truncation=True,
                   max_length=full - 3)
    _assert_same_as_stock(batch, stock)
    assert batch["input_ids"].shape[1] == full - 3
    with pytest.raises(ValueError, match=r"cut vision tokens of example\(s\) \[0\]"):
        QwenVLCollator(qwen2, max_length=5)(examples)


def test_processor_untouched_and_collator_pickles(qwen2):
    image_processor = qwen2.image_processor
    collator = QwenVLCollator(qwen2)
    assert qwen2.image_processor is image_processor and qwen2.video_processor is not None
    examples = [_example(f"{IMAGE} {VIDEO}", [_image(40, 60, 0)], [CLIPS[1]])]
    a, b = collator(examples), pickle.loads(pickle.dumps(collator))(examples)
    assert all(torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])) for k in a if k not in ("image_sizes",
                                                                                                   "video_sizes"))


def test_metadata_is_not_mutated(tokenizer):
    processor = _make_processor("Qwen3VLProcessor", tokenizer)
    meta = VideoMetadata(total_num_frames=30, fps=10.0, frames_indices=[0, 10, 20])
    example = {"text": f"{VIDEO} a cat", "videos": [_clip(3, 48, 48, 0)], "video_metadata": [meta]}
    first = QwenVLCollator(processor)([example])["input_ids"]
    assert meta.frames_indices == [0, 10, 20]
    assert torch.equal(QwenVLCollator(processor)([example])["input_ids"], first)


def _bad_cases():
    img = _image(40, 60, 0)
    return [
        pytest.param([], ValueError, "non-empty list", id="empty-batch"),
        pytest.param(["a cat"], TypeError, "example 0: expected a dict", id="not-a-dict"),
        pytest.param([{"text": "a"}, {"images": [img]}], ValueError, "example 1: expected exactly one of 'messages'",
                     id="no-text-or-messages"),
        pytest.param([{"text": "a"}, {"input_ids": [1, 2]}], ValueError,
                     r"example 1: expected exactly one of .* got keys \['input_ids'\]; transformers.Trainer drops the "
                     r"dataset columns .* TrainingArguments\(remove_unused_columns=False\)",
                     id="columns-dropped-by-trainer"),
        pytest.param([{"text": "a", "messages": []}], ValueError, "example 0: expected exactly one", id="both"),
        pytest.param([{"text": 3}], TypeError, "example 0: 'text' must be a string", id="text-not-str"),
        pytest.param([{"text": "a"}, {"text": f"{IMAGE} {IMAGE}", "images": [img]}], ValueError,
                     r"example 1: 2 image placeholder\(s\) \(<\|image_pad\|>\) in its text but 1 image",
                     id="two-placeholders-one-image"),
        pytest.param([{"text": "a cat", "images": [img]}], ValueError, "example 0: 0 image placeholder",
                     id="image-without-placeholder"),
        pytest.param([{"text": IMAGE, "images": img}], TypeError, "example 0: 'images' must be a list",
                     id="images-not-list"),
        pytest.param([{"text": IMAGE, "images": [img.float()]}], TypeError,
                     r"example 0, images\[0\]: expected a uint8 tensor, got torch.float32", id="float-image"),
        pytest.param([{"text": IMAGE, "images": [img.permute(1, 2, 0)]}], ValueError,
                     r"example 0, images\[0\]: expected a \[3, H, W\] tensor", id="hwc-tensor"),
        pytest.param([{"text": IMAGE, "images": [np.zeros((4, 4, 3), np.float32)]}], TypeError,
                     "expected a uint8 array", id="float-array"),
        pytest.param([{"text": IMAGE, "images": ["cat.jpg"]}], TypeError, "got str", id="path"),
        pytest.param([{"text": VIDEO, "videos": [img]}], ValueError,
                     r"example 0, videos\[0\]: expected a \[T, 3, H, W\] tensor", id="image-as-video"),
        pytest.param([{"text": VIDEO, "videos": [_clip(2, 40, 40, 0)], "video_metadata": [None, None]}], ValueError,
                     "2 video_metadata entries for 1 videos", id="metadata-count"),
        pytest.param([{"text": VIDEO, "videos": [_clip(2, 40, 40, 0)], "video_metadata": [{"frames_indices": [0]}]}],
                     ValueError, "lists 1 frame indices but the clip has 2 frames", id="metadata-frames"),
        pytest.param([{"text": VIDEO, "videos": [_clip(2, 40, 40, 0)], "video_metadata": [{"speed": 2}]}],
                     TypeError, "bad video metadata dict", id="metadata-key"),
        pytest.param([{"text": IMAGE, "images": [_image(2, 500, 0)]}], ValueError,
                     r"example 0, images\[0\]: absolute aspect ratio", id="aspect-ratio"),
    ]


@pytest.mark.parametrize("examples, exc, message", _bad_cases())
def test_bad_examples_raise_naming_the_example(qwen2, examples, exc, message):
    with pytest.raises(exc, match=message):
        QwenVLCollator(qwen2)(examples)


def test_bad_settings_raise(tokenizer, qwen2):
    with pytest.raises(ValueError, match="label_mask must be"):
        QwenVLCollator(qwen2, label_mask="user")
    with pytest.raises(ValueError, match="bool tensor of shape"):
        QwenVLCollator(qwen2, label_mask=lambda b: torch.ones(1))([{"text": "a"}])
    qwen3 = _make_processor("Qwen3VLProcessor", tokenizer)
    with pytest.raises(ValueError, match=r"example 0, videos\[0\]: .*at least temporal_factor=2 frames"):
        QwenVLCollator(qwen3)([{"text": VIDEO, "videos": [_clip(1, 64, 64, 0)]}])
