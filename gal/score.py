"""CLIP similarity (the paper's sim() of Eq. 8): batched image features, text features cached per text."""

from __future__ import annotations

import torch
from PIL import Image

from gal.errors import GalError
from gal.locations import check_model_folder, locate
from gal.models import quiet_transformers


class ClipScorer:
    def __init__(self, name_or_path: str, device: torch.device | str = "cpu", batch_size: int = 64,
                 allow_pickle: bool = False):
        name_or_path = locate(name_or_path, "--scorer")
        check_model_folder(name_or_path, "--scorer", allow_pickle)
        with quiet_transformers():
            from transformers import AutoConfig, CLIPModel, CLIPProcessor

            try:
                config = AutoConfig.from_pretrained(name_or_path)
            except (OSError, ValueError) as e:
                raise GalError(f"--scorer {name_or_path}: cannot load a model config ({str(e).splitlines()[0]})") from None
            if config.model_type != "clip":
                raise GalError(f"--scorer {name_or_path}: found a '{config.model_type}' model; expected a CLIP model "
                               "(transformers CLIPModel, e.g. openai/clip-vit-base-patch32)")
            try:
                self.model = CLIPModel.from_pretrained(name_or_path, use_safetensors=None if allow_pickle else True).to(device).eval()
                self.processor = CLIPProcessor.from_pretrained(name_or_path)
            except (OSError, ValueError) as e:
                raise GalError(f"--scorer {name_or_path}: cannot load it ({str(e).splitlines()[0]}); "
                               "expected a CLIP folder with safetensors weights, tokenizer and image processor") from None
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._text_cache: dict[str, torch.Tensor] = {}

    @classmethod
    def from_modules(cls, model, processor, batch_size: int = 64) -> "ClipScorer":
        """A scorer around a CLIPModel already in memory (e.g. one being trained: make a new scorer after each
        update, its text features are cached)."""
        self = cls.__new__(cls)
        self.model, self.processor, self.device, self.batch_size = model, processor, model.device, batch_size
        self._text_cache = {}
        return self

    @torch.no_grad()
    def image_features(self, images: list[Image.Image]) -> torch.Tensor:
        """L2-normalised image embeddings, (n, d), on the CPU (PIL images or uint8 (H, W, 3) arrays)."""
        out = []
        for i in range(0, len(images), self.batch_size):
            pixels = self.processor(images=images[i:i + self.batch_size], return_tensors="pt")["pixel_values"]
            out.append(_normalized(self.model.get_image_features(pixel_values=pixels.to(self.device))))
        return torch.cat(out) if out else torch.empty(0)

    @torch.no_grad()
    def text_features(self, texts: list[str]) -> torch.Tensor:
        """L2-normalised text embeddings, (n, d); each distinct text is encoded once per scorer."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._text_cache))
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i:i + self.batch_size]
            tokens = self.processor.tokenizer(chunk, padding=True, truncation=True, return_tensors="pt").to(self.device)
            for text, feature in zip(chunk, _normalized(self.model.get_text_features(**tokens))):
                self._text_cache[text] = feature
        return torch.stack([self._text_cache[t] for t in texts])

    def similarity(self, image_features: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """Cosine similarity of each image to each text, (n_images, n_texts)."""
        return image_features @ self.text_features(texts).T

    def oracle(self, image_features: torch.Tensor, texts: list[str], non_soi: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 8's two similarities per image: s_a = sim(I, its own text), s_n = max over the non-SoI texts
        sim(I, ē*); Φ = 1 where s_a <= s_n (`strategy.overfit`)."""
        s_a = (image_features * self.text_features(texts)).sum(-1)
        return s_a, self.similarity(image_features, non_soi).max(dim=1).values

    def identity(self, image_features: torch.Tensor, texts: list[str], reference_features: torch.Tensor,
                 captions: list[str]) -> torch.Tensor:
        """How much of the references' subject each image shows, (n,): the cosine between what the scorer sees in
        the image beyond its own text and what it sees in the references beyond their captions (each image feature
        less its projection on its text's feature), mean over the references. A copied background is in a
        reference's caption, so it adds little here, unlike the plain image-to-image similarity of IMG-ALN."""
        def beyond(features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
            rest = features - (features * text).sum(-1, keepdim=True) * text
            return torch.nn.functional.normalize(rest, dim=-1)

        samples = beyond(image_features.float(), self.text_features(texts))
        references = beyond(reference_features.float(), self.text_features(captions))
        return (samples @ references.T).mean(dim=1)


def _normalized(features) -> torch.Tensor:
    # transformers 5 returns a model output whose pooler_output is the projected embedding
    features = getattr(features, "pooler_output", features)
    return torch.nn.functional.normalize(features.float(), dim=-1).cpu()
