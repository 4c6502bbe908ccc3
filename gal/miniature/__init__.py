"""The miniature world: a procedural 32x32 image world, with a text-to-image model and a CLIP
scorer pretrained on it, so that GAL can be demonstrated on a CPU.

- `world`     scenes, renderer, caption grammar, held-out subjects, anchors and test prompts
- `train`     resumable, seeded pretraining: AutoencoderKL -> CLIPModel scorer -> UNet + text encoder (its
              tokenizer has the world's words as whole tokens; any text still tokenizes)
- `check`     quality measurements of a trained pair (scorer and generator near-miss accuracy)
- `judge`     the simulated person of the bench's Oracle + Balance row
- `table1`    `gal bench`: the paper's comparison (Table 1, Figure 5) and the frontier of training less

The anchors, test prompts and reference set-up follow the GAL paper's (Zhang et al.; anchor lists
of the authors' public code), translated into this world's vocabulary.
"""

from gal.locations import WEIGHTS, bundled  # noqa: F401  (where the bundled weights are: gal.locations)

# `gal run` settings for the bundled model (its sampler's steps and guidance follow from the base: config.resolved)
SETTINGS = {"base": "miniature", "scorer": "miniature"}
