"""Fine-tune a tiny, randomly initialised Qwen2-VL-shaped model on the bundled sample images for a few steps.

The data path is the one a real run takes: DataLoader workers decode the image files (``qwen_vis_prep.io``)
and collate them with :class:`~qwen_vis_prep.collate.QwenVLCollator` -- token ids planned from image sizes by
the stock ``Qwen2VLProcessor``, pixels kept as one flat uint8 buffer -- and the model,
:class:`~qwen_vis_prep.hf_model.QwenVLWithPreprocessor`, resizes, normalises and patchifies on its own device as
its first layer. Everything (tokenizer, chat template, model) is built here, so nothing is downloaded.

    python examples/finetune_tiny.py                 # CUDA if available, else CPU
    python examples/finetune_tiny.py --device cpu --steps 8
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
import transformers
from torch.utils.data import DataLoader, Dataset
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from qwen_vis_prep import VideoConfig, io
from qwen_vis_prep.collate import QwenVLCollator
from qwen_vis_prep.hf_model import QwenVLWithPreprocessor

# One pixel budget for the processor that plans the tokens and for the preprocessor in the model.
MIN_PIXELS, MAX_PIXELS = 28 * 28 * 4, 28 * 28 * 16

SPECIAL = ["<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"]
WORDS = ("user assistant system what is in the picture a an photo of astronaut cat coffee cup grey rings "
         "coloured disc").split()
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% else %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CAPTIONS = {"astronaut": "a photo of an astronaut", "chelsea": "a photo of a cat", "coffee": "a coffee cup",
            "gray_rings": "grey rings", "rgba_disc": "a coloured disc"}


def tiny_processor() -> transformers.Qwen2VLProcessor:
    """The stock processor over a word-level tokenizer built in memory (PIL-backend image processor)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "<|endoftext|>": 1, **{t: i + 2 for i, t in enumerate(SPECIAL + WORDS)}}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]",
                                                     pad_token="<|endoftext|>", additional_special_tokens=SPECIAL)
    return transformers.Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS),
        video_processor=transformers.Qwen2VLVideoProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS),
        tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)


def tiny_model(tokenizer: Any) -> transformers.Qwen2VLForConditionalGeneration:
    """A Qwen2-VL with one layer per tower and 64-wide hidden states, randomly initialised."""
    ids = {key: tokenizer.convert_tokens_to_ids(tok) for key, tok in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    text = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                intermediate_size=128, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                bos_token_id=None, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]})
    vision = dict(depth=2, embed_dim=64, hidden_size=64, num_heads=4, mlp_ratio=2)
    config = transformers.Qwen2VLConfig(text_config=text, vision_config=vision, **ids)
    return transformers.Qwen2VLForConditionalGeneration(config)


class CaptionDataset(Dataset):
    """One ``{"messages", "images"}`` example per sample image, decoded when fetched (in the worker)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        path = self.paths[i]
        image = io.load_image(path)  # [3, H, W] uint8, alpha composited onto white, grey expanded
        question = [{"type": "image"}, {"type": "text", "text": "what is in the picture"}]
        messages = [{"role": "user", "content": question},
                    {"role": "assistant", "content": CAPTIONS.get(path.stem, "a photo")}]
        return {"messages": messages, "images": [image]}


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Token tensors and pixel buffers to ``device``; grids stay on the host, where the wrapper checks them
    against its own before placing them."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) and not k.endswith("grid_thw") else v
            for k, v in batch.items()}


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)

    processor = tiny_processor()
    loader = DataLoader(CaptionDataset(io.sample_images()), batch_size=args.batch_size, shuffle=True,
                        num_workers=args.workers, collate_fn=QwenVLCollator(processor),
                        pin_memory=device.type == "cuda", persistent_workers=args.workers > 0, drop_last=True)
    video_config = VideoConfig.from_preset("qwen2-vl", min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    model = QwenVLWithPreprocessor(tiny_model(processor.tokenizer), video_config=video_config,
                                   min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    print(f"device={device}, {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"{len(loader.dataset)} images, preprocessor: {model.preprocessor.extra_repr()}")

    step, start, loss = 0, time.perf_counter(), torch.tensor(float("nan"))
    while step < args.steps:
        for batch in loader:
            loss = model(**to_device(batch, device)).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            sizes = " ".join(f"{h}x{w}" for _, h, w in batch["image_sizes"])
            print(f"step {step}: loss {loss.item():.4f}  images {sizes}  grids {batch['image_grid_thw'].tolist()}")
            if step == args.steps:
                break
    print(f"{args.steps} steps in {time.perf_counter() - start:.1f} s")
    return loss.item()


if __name__ == "__main__":
    main()
