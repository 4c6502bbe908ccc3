"""What a model folder of the real on-disk layouts holds beside its weights, built locally (no hub): a CLIP
byte-level BPE tokenizer whose given words are whole tokens, a text encoder's config for it, a CLIP processor, the
Stable Diffusion pipeline around its modules. The miniature world's architectures
(`gal.miniature.architecture`) are written with these; the repository's `fixtures` (random weights for tests and
benchmarks, outside the package) too."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path


def bytes_to_unicode() -> list[str]:
    """The byte-to-character table of GPT-2/CLIP byte-level BPE: character `i` stands for byte `i`."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """Plain BPE training: merge the most frequent adjacent pair until every word is one symbol.
    Ties go to the smaller pair, so the result is deterministic."""
    seqs = {w: list(w[:-1]) + [w[-1] + "</w>"] for w in sorted(set(words))}
    merges = []
    while True:
        counts = Counter(pair for seq in seqs.values() for pair in zip(seq, seq[1:]))
        if not counts:
            return merges
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        for w, seq in seqs.items():
            seqs[w] = _merge(seq, best)


def _merge(seq: list[str], pair: tuple[str, str]) -> list[str]:
    out, i = [], 0
    while i < len(seq):
        if i + 1 < len(seq) and (seq[i], seq[i + 1]) == pair:
            out.append(seq[i] + seq[i + 1])
            i += 2
        else:
            out.append(seq[i])
            i += 1
    return out


def write_clip_tokenizer(folder: str | Path, words: list[str] | tuple[str, ...] = (), max_length: int = 77):
    """vocab.json, merges.txt and the tokenizer config in `folder`; returns the loaded `CLIPTokenizer`. The 512
    byte-level base tokens (with and without the end-of-word mark) come first, then one token per merge."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = bytes_to_unicode()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    merges = learn_merges(list(words))
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length)
    tokenizer.save_pretrained(folder)
    return tokenizer


def text_config(tokenizer, **widths) -> dict:
    """A `CLIPTextConfig`'s arguments for `tokenizer` (vocabulary and special tokens) at the given widths."""
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    return dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>"),
                eos_token_id=eos, pad_token_id=eos, max_position_embeddings=tokenizer.model_max_length) | widths


def sd_pipeline(vae, text_encoder, tokenizer, unet, scheduler):
    """The modules as a `StableDiffusionPipeline` (no safety checker: these are not SD's weights)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def clip_processor(tokenizer, image_size: int, **image_kwargs):
    from transformers import CLIPImageProcessor, CLIPProcessor

    images = CLIPImageProcessor(size={"shortest_edge": image_size},
                                crop_size={"height": image_size, "width": image_size}, **image_kwargs)
    return CLIPProcessor(image_processor=images, tokenizer=tokenizer)
