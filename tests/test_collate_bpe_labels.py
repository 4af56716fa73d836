"""QwenVLCollator's assistant-only labels with a byte-level BPE tokenizer like Qwen's (the Qwen2 split regex +
ByteLevel), where the ``\\n`` that ends ``<|im_start|>assistant\\n`` merges with a reply that starts with a newline
(``"\\n\\n"`` is one token): labels on exactly the tokens transformers' own assistant mask marks. The tokenizer is
trained offline on a small generated corpus."""

from __future__ import annotations

import random

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import PIL.Image  # noqa: E402
import transformers  # noqa: E402

from qwen_vis_prep.collate import QwenVLCollator, vision_token_mask  # noqa: E402

# transformers/models/qwen2/tokenization_qwen2.py
PRETOKENIZE_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                     r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
SPECIAL = ["<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"]
# A Qwen2-VL-like template with the assistant turns (content and <|im_end|>) in {% generation %} blocks, and the
# same template without them (what the processor renders).
TAGGED = (
    "{% macro body(message) %}{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}{% endmacro %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ body(message) }}<|im_end|>{% endgeneration %}"
    "{% else %}{{ body(message) }}<|im_end|>{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PLAIN = TAGGED.replace("{% generation %}", "").replace("{% endgeneration %}", "")
REPLIES = ["a cat", "\na cat", "\n\na cat", "\n", "\n\n", "", " ", " a cat", "  x", "123 dogs", "你好，世界",
           "\n你好", "\r\nx", " \nx", "x\n\n", "!\n"]


def _corpus(n=300, seed=0):
    rng = random.Random(seed)
    words = "the a cat dog picture is in and what describe this red 猫 狗 图片 你好 世界".split()
    seps = [" ", "  ", "\n", "\n\n", "\n\n\n", " \n", "\t", ", ", ". ", "!\n", "?\n\n"]
    for _ in range(n):
        body = "".join(rng.choice(words + [str(rng.randint(0, 999))]) + rng.choice(seps)
                       for _ in range(rng.randint(3, 10)))
        lead = rng.choice(seps).strip(" ")
        yield f"<|im_start|>user\n{body}<|im_end|>\n<|im_start|>assistant\n{lead}{body}<|im_end|>\n"


@pytest.fixture(scope="module")
def processor():
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE())
    tk.normalizer = normalizers.NFC()
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(_corpus(), trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<|endoftext|>", *SPECIAL], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>",
                                               pad_token="<|endoftext|>", additional_special_tokens=SPECIAL)
    ip = transformers.Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 12)
    vp = transformers.Qwen2VLVideoProcessor(min_pixels=28 * 28 * 2, max_pixels=28 * 28 * 8)
    proc = transformers.Qwen2VLProcessor(image_processor=ip, tokenizer=tok, video_processor=vp)
    proc.chat_template = PLAIN
    return proc


def _image(h, w, seed):
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _conversations():
    """(messages, images): each reply alone, and in multi-turn chats with an image in each user turn."""
    out = [([{"role": "user", "content": "what is this"}, {"role": "assistant", "content": r}], []) for r in REPLIES]
    for i, r in enumerate(REPLIES):
        out.append(([{"role": "system", "content": "you are helpful"},
                     {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "describe"}]},
                     {"role": "assistant", "content": r},
                     {"role": "user", "content": [{"type": "text", "text": "and this"}, {"type": "image"}]},
                     {"role": "assistant", "content": [{"type": "text", "text": REPLIES[(i + 3) % len(REPLIES)]}]}],
                    [_image(50, 70, i), _image(60, 40, i + 99)]))
    return out


def _reference_keep(processor, messages, images):
    """The processor's own assistant mask (TAGGED template) less vision tokens, and its input_ids."""
    assert processor.apply_chat_template(messages, chat_template=TAGGED, tokenize=False) == \
        processor.apply_chat_template(messages, tokenize=False)
    pil = iter(PIL.Image.fromarray(x.permute(1, 2, 0).numpy()) for x in images)
    messages = [m if isinstance(m["content"], str) else
                {**m, "content": [{**c, "image": next(pil)} if c["type"] == "image" else c for c in m["content"]]}
                for m in messages]
    out = processor.apply_chat_template(messages, chat_template=TAGGED, tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True, return_tensors="pt")
    ids = out["input_ids"][0]
    span = processor.tokenizer.convert_tokens_to_ids(["<|vision_start|>", "<|vision_end|>"])
    vision = vision_token_mask(ids[None], [processor.image_token_id, processor.video_token_id], *span)[0]
    return ids, out["assistant_masks"][0].bool() & ~vision


def test_tokenizer_merges_header_newline(processor):
    """Precondition: a reply starting with a newline shares its first token with the header's "\\n"."""
    tok = processor.tokenizer
    assert tok.tokenize("<|im_start|>assistant\n") == ["<|im_start|>", "assistant", "Ċ"]
    assert tok.tokenize("<|im_start|>assistant\n\nhi")[:3] == ["<|im_start|>", "assistant", "ĊĊ"]


def test_labels_match_transformers_assistant_mask(processor):
    convs = _conversations()
    examples = [{"messages": m, **({"images": i} if i else {})} for m, i in convs]
    batch = QwenVLCollator(processor)(examples)
    tok = processor.tokenizer
    for row, (messages, images) in enumerate(convs):
        ids, keep = _reference_keep(processor, messages, images)
        n = len(ids)
        assert torch.equal(batch["input_ids"][row, :n], ids)
        expected = torch.where(keep, ids, torch.full_like(ids, -100))
        assert torch.equal(batch["labels"][row, :n], expected), (
            [m["content"] for m in messages if m["role"] == "assistant"],
            [(t, bool(k), bool(c)) for t, k, c in zip(tok.convert_ids_to_tokens(ids.tolist()), keep,
                                                     batch["labels"][row, :n] != -100)])
        assert (batch["labels"][row, n:] == -100).all()


def test_reply_starting_with_newline_is_trained_on(processor):
    tok = processor.tokenizer
    batch = QwenVLCollator(processor)([{"messages": [{"role": "user", "content": "what is this"},
                                                     {"role": "assistant", "content": "\n\na cat"}]}])
    labels = batch["labels"][0]
    assert tok.convert_ids_to_tokens(labels[labels != -100].tolist()) == ["ĊĊĊ", "a", "Ġcat", "<|im_end|>"]
