"""A CLIP byte-level BPE tokenizer for the miniature world.

Every word of the world is one token (learned BPE merges), and anything else still tokenizes
through the 512 byte-level base tokens (characters, with and without the end-of-word mark), so a
placeholder such as `<sks>` or `<twotone-star>` never becomes an unknown token.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from gal.miniature.world import world_words
from gal.tiny import _bytes_to_unicode

MAX_LENGTH = 32  # longest world prompt, placeholder included, is ~16 tokens


def learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """Plain BPE training: merge the most frequent adjacent pair until every word is one symbol.
    Ties go to the smaller pair, so the result is deterministic."""
    words = sorted(set(words))
    seqs = {w: list(w[:-1]) + [w[-1] + "</w>"] for w in words}
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


def write_tokenizer(folder: str | Path, extra_words: tuple[str, ...] = ()) -> "CLIPTokenizer":  # noqa: F821
    """Write vocab.json + merges.txt + tokenizer config to `folder` and return the loaded tokenizer."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = _bytes_to_unicode()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    words = [w for w in world_words() + list(extra_words) if w.isalpha() and len(w) > 1]
    merges = learn_merges(words)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=MAX_LENGTH)
    tokenizer.save_pretrained(folder)
    return tokenizer
