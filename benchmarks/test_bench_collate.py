"""The training input pipeline on the CPU: what a DataLoader worker spends per batch, and what the batch
moves to the device, with the stock processor in the worker against ``QwenVLCollator`` (tokens planned from
sizes, pixels kept as uint8 for the preprocessor inside the model).

Run: ``pytest benchmarks/test_bench_collate.py --benchmark-only``. A batch is 8 decoded photos (1080x1920,
scikit-image pictures resized with Pillow) with one chat turn each, ``Qwen2VLProcessor`` with a small offline
tokenizer, the ``qwen2-vl`` preset at the serving budget ``max_pixels = 28*28*1280``. Providers:
``stock-torchvision`` / ``stock-pil`` (the processor with ``Qwen2VLImageProcessor`` /
``Qwen2VLImageProcessorPil``: the whole pixel pipeline in the worker) and ``ours-collator``. Each records in
``extra_info`` the bytes of pixels a batch carries to the device (float32 patches for the stock processor,
uint8 images for ours); ``input_ids`` are checked equal before timing. Per 1,000 images: median / 8 * 1000.

``test_worker_batches_from_jpeg_files`` times the whole worker job through a real ``DataLoader`` (one
persistent worker, four batches of 8 per round): decode the JPEG files (the same photos, quality 90), then
collate, and hand the batch to the main process. ``ours-collator`` decodes with ``qwen_vis_prep.io.load_images``
and collates with ``QwenVLCollator``; ``stock-torchvision`` opens each file with Pillow and runs the stock
processor. Per 1,000 images: median / 32 * 1000.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

from qwen_vis_prep.collate import QwenVLCollator

MAX_PIXELS = 28 * 28 * 1280
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
SPECIAL = ["<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"]
TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<|vision_start|><|image_pad|>"
    "<|vision_end|>{% else %}{{ item['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
)


@functools.lru_cache(maxsize=None)
def batch_images() -> list[torch.Tensor]:
    from skimage import data

    out = []
    for i in range(8):
        src = getattr(data, PHOTOS[i % 4])()
        hwc = np.array(Image.fromarray(src).resize((1920, 1080), Image.Resampling.BICUBIC))
        out.append(torch.from_numpy(hwc).permute(2, 0, 1).contiguous())
    return out


@functools.lru_cache(maxsize=None)
def processor(kind: str) -> transformers.Qwen2VLProcessor:
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = "user assistant describe the picture a cat".split()
    vocab = {"[UNK]": 0, "<|endoftext|>": 1, **{t: i + 2 for i, t in enumerate(SPECIAL + words)}}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="<|endoftext|>",
                                                     additional_special_tokens=SPECIAL)
    if kind == "stock-pil":
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        image_processor = Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=MAX_PIXELS)
    else:
        image_processor = transformers.Qwen2VLImageProcessor(min_pixels=3136, max_pixels=MAX_PIXELS)
    return transformers.Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                         video_processor=transformers.Qwen2VLVideoProcessor(), chat_template=TEMPLATE)


def examples() -> list[dict]:
    turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "describe the picture"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "a cat"}]}]
    return [{"messages": turn, "images": [img]} for img in batch_images()]


def provider_fn(provider: str):
    if provider == "ours-collator":
        return lambda: collator()(examples())
    proc = processor(provider)
    texts = [proc.apply_chat_template(e["messages"], tokenize=False) for e in examples()]
    return lambda: proc(text=texts, images=list(batch_images()), return_tensors="pt", padding=True)


def pixel_bytes(provider: str, batch) -> int:
    return batch["pixel_images"].numel() if provider == "ours-collator" else batch["pixel_values"].nbytes


@pytest.mark.parametrize("provider", ["ours-collator", "stock-torchvision", "stock-pil"])
def test_collate_batch_of_8_1080p(benchmark, provider):
    run = provider_fn(provider)
    batch = run()
    reference = provider_fn("stock-torchvision")()
    assert torch.equal(batch["input_ids"], reference["input_ids"])
    benchmark.group = "collate-8x1080p"
    benchmark.extra_info.update(provider=provider, images=8, pixel_bytes_to_device=pixel_bytes(provider, batch),
                                torch_threads=torch.get_num_threads(), torch=torch.__version__,
                                transformers=transformers.__version__)
    benchmark.pedantic(run, rounds=5, warmup_rounds=1, iterations=1)


BATCHES_PER_ROUND = 4


@pytest.fixture(scope="module")
def jpeg_files(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("jpegs")
    paths = []
    for i, img in enumerate(batch_images()):
        path = os.path.join(folder, f"photo{i}.jpg")
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(path, quality=90)
        paths.append(path)
    return paths


class JpegBatches(torch.utils.data.Dataset):
    """Item ``i``: batch ``i`` of 8 chat turns, each naming one JPEG file."""

    def __init__(self, paths: list[str], batches: int) -> None:
        self.paths, self.batches = paths, batches

    def __len__(self) -> int:
        return self.batches

    def __getitem__(self, i: int) -> list[str]:
        return self.paths


@functools.lru_cache(maxsize=None)
def collator() -> QwenVLCollator:
    return QwenVLCollator(processor("stock-torchvision"))


class DecodeAndCollate:
    """The worker's job: decode the batch's files, then build the batch (picklable, for worker processes)."""

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def __call__(self, items: list[list[str]]) -> dict:
        (paths,) = items
        turn = examples()[0]["messages"]
        if self.provider == "ours-collator":
            from qwen_vis_prep.io import load_images

            return collator()([{"messages": turn, "images": [img]} for img in load_images(paths)])
        proc = processor(self.provider)
        images = [Image.open(p).convert("RGB") for p in paths]
        texts = [proc.apply_chat_template(turn, tokenize=False)] * len(images)
        return dict(proc(text=texts, images=images, return_tensors="pt", padding=True))


@pytest.mark.parametrize("provider", ["ours-collator", "stock-torchvision"])
def test_worker_batches_from_jpeg_files(benchmark, provider, jpeg_files):
    job = DecodeAndCollate(provider)
    batch = job([jpeg_files])
    assert torch.equal(batch["input_ids"], DecodeAndCollate("stock-torchvision")([jpeg_files])["input_ids"])
    loader = torch.utils.data.DataLoader(JpegBatches(jpeg_files, BATCHES_PER_ROUND), batch_size=1, num_workers=1,
                                         collate_fn=job, persistent_workers=True, prefetch_factor=2)
    list(loader)  # start the worker and warm it
    benchmark.group = "worker-8x1080p-jpeg"
    benchmark.extra_info.update(provider=provider, images=8 * BATCHES_PER_ROUND,
                                pixel_bytes_to_device_per_batch=pixel_bytes(provider, batch),
                                torch_threads=torch.get_num_threads(), torch=torch.__version__,
                                transformers=transformers.__version__)
    benchmark.pedantic(lambda: list(loader), rounds=5, warmup_rounds=0, iterations=1)
