"""Tiny random models for every tier family, built offline from configs and saved like hub models.

Each builder writes a folder that the tier loads through the same `from_pretrained` path a real
checkpoint takes (AutoModel*/AutoProcessor), so the tests exercise the real loading code.
"""

from __future__ import annotations

import json
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
