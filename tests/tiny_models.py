"""Tiny random models for every tier family, built offline from configs and saved like hub models.

Each builder writes a folder that the tier loads through the same `from_pretrained` path a real
checkpoint takes (AutoModel*/AutoProcessor), so the tests exercise the real loading code.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import torch

WORDS = ("a photo of road construction work street with traffic cones and barriers the normal clear "
         "highway city rural car is there roadwork in this image answer yes or no yes no Yes No").split()


def make_tokenizer(words=WORDS, specials=("[PAD]", "[UNK]", "[BOS]", "[EOS]"), extra_special=(), eos="[EOS]",
                   bos="[BOS]", template=True):
    """A word-level fast tokenizer built with the `tokenizers` library (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for w in [*specials, *extra_special, *words]:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if template and bos and eos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A {eos}", special_tokens=[(bos, vocab[bos]), (eos, vocab[eos])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   bos_token=bos, eos_token=eos,
                                   additional_special_tokens=list(extra_special) or None)
    return fast


def make_tiny_clip(path: Path, seed: int = 0, image_size: int = 32) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    torch.manual_seed(seed)
    tok = make_tokenizer()
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=32, projection_dim=16,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=image_size, patch_size=8, projection_dim=16),
        projection_dim=16)
    CLIPModel(cfg).eval().save_pretrained(path)
    proc = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": image_size},
                                                            crop_size={"height": image_size, "width": image_size}),
                         tokenizer=tok)
    proc.save_pretrained(path)
    return path


def make_tiny_siglip(path: Path, seed: int = 0, image_size: int = 32) -> Path:
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    torch.manual_seed(seed)
    tok = make_tokenizer()
    cfg = SiglipConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=64, projection_size=32,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=image_size, patch_size=8))
    model = SiglipModel(cfg).eval()
    model.save_pretrained(path)
    proc = SiglipProcessor(image_processor=SiglipImageProcessor(size={"height": image_size, "width": image_size}),
                           tokenizer=tok)
    proc.save_pretrained(path)
    return path


# Labels for tiny detectors: a few Objects365-style roadwork names plus distractors.
DETECTOR_LABELS = {0: "Person", 1: "Traffic cone", 2: "Car", 3: "Barrel/bucket", 4: "Machinery Vehicle",
                   5: "Traffic Sign"}


def make_tiny_detr(path: Path, seed: int = 0, image_size: int = 64) -> Path:
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor, ResNetConfig

    torch.manual_seed(seed)
    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                            out_features=["stage2"])
    cfg = DetrConfig(backbone_config=backbone, use_timm_backbone=False, use_pretrained_backbone=False,
                     num_queries=10, d_model=16, encoder_layers=1, decoder_layers=1, encoder_ffn_dim=32,
                     decoder_ffn_dim=32, encoder_attention_heads=2, decoder_attention_heads=2,
                     id2label=DETECTOR_LABELS, label2id={v: k for k, v in DETECTOR_LABELS.items()})
    DetrForObjectDetection(cfg).eval().save_pretrained(path)
    DetrImageProcessor(size={"height": image_size, "width": image_size}, do_pad=False).save_pretrained(path)
    return path


def make_tiny_rtdetr(path: Path, seed: int = 0, image_size: int = 64) -> Path:
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrImageProcessor, RTDetrResNetConfig

    torch.manual_seed(seed)
    backbone = RTDetrResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                                  layer_type="basic", out_features=["stage2", "stage3", "stage4"])
    cfg = RTDetrConfig(backbone_config=backbone, use_pretrained_backbone=False, encoder_in_channels=[16, 24, 32],
                       encoder_hidden_dim=16, encoder_ffn_dim=32, encoder_attention_heads=2, d_model=16,
                       decoder_in_channels=[16, 16, 16], decoder_ffn_dim=32, decoder_layers=1,
                       decoder_attention_heads=2, num_queries=20, num_denoising=0,
                       id2label=DETECTOR_LABELS, label2id={v: k for k, v in DETECTOR_LABELS.items()})
    RTDetrForObjectDetection(cfg).eval().save_pretrained(path)
    RTDetrImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(path)
    return path


QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>")
# A Qwen-style chat template reduced to what the tiers send: text and image parts.
QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
VLM_WORDS = ("system user assistant you are a helpful is there roadwork construction work zone in this image "
             "street road answer with yes or no only ? . , yes no Yes No").split()


def make_tiny_qwen25_vl(path: Path, seed: int = 0) -> Path:
    """A random Qwen2.5-VL (2 text layers, 2 vision blocks, hidden 32) with a word-level tokenizer of
    under 40 tokens, so a server asked for top_logprobs=64 returns the whole distribution."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                              Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    torch.manual_seed(seed)
    vocab: dict[str, int] = {}
    for w in ["[UNK]", *QWEN_SPECIALS, *VLM_WORDS]:
        vocab.setdefault(w, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="<|endoftext|>",
                                  eos_token="<|im_end|>", additional_special_tokens=list(QWEN_SPECIALS))
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    cfg = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, window_size=56, out_hidden_size=32,
                           fullatt_block_indexes=[1]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    Qwen2_5_VLForConditionalGeneration(cfg).eval().save_pretrained(path)
    improc = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=56 * 56, patch_size=14, merge_size=2,
                                   temporal_patch_size=2)
    vidproc = Qwen2VLVideoProcessor(min_pixels=56 * 56, max_pixels=56 * 56, patch_size=14, merge_size=2,
                                    temporal_patch_size=2)
    Qwen2_5_VLProcessor(image_processor=improc, tokenizer=tok, video_processor=vidproc,
                        chat_template=QWEN_TEMPLATE).save_pretrained(path)
    return path


BUILDERS = {"clip": make_tiny_clip, "siglip": make_tiny_siglip, "detr": make_tiny_detr, "rtdetr": make_tiny_rtdetr,
            "qwen25_vl": make_tiny_qwen25_vl}
_ROOT: Path | None = None
_BUILT: dict[str, Path] = {}


def tiny_dir(name: str) -> Path:
    """The folder of tiny model `name`, built once per test process (models are read-only)."""
    global _ROOT
    if name not in _BUILT:
        if _ROOT is None:
            _ROOT = Path(tempfile.mkdtemp(prefix="roadwork_tiny_"))
            atexit.register(shutil.rmtree, _ROOT, True)
        _BUILT[name] = BUILDERS[name](_ROOT / name)
    return _BUILT[name]


def start_server(app):
    """Run an ASGI app with uvicorn on a free loopback port in a thread; returns (base_url, stop)."""
    import socket
    import threading
    import time

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)
        sock.close()

    return f"http://127.0.0.1:{port}/v1", stop
