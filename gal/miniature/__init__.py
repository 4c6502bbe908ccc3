"""The miniature world: a procedural 32x32 image world, with a text-to-image model and a CLIP
scorer pretrained on it, so that GAL can be demonstrated on a CPU.

- `world`         scenes, renderer, caption grammar, held-out subjects, anchors and test prompts
- `architecture`  the models' sizes and architectures: AutoencoderKL, UNet + CLIP text encoder, CLIPModel scorer
                  (their tokenizer has the world's words as whole tokens; any text still tokenizes)
- `layout`        what a model folder holds beside its weights (tokenizer, processor, pipeline), built locally
- `trainer`       a resumable, seeded, killable trainer: run folder and state, checkpoints, the phase loop
- `train`         `gal miniature train`: data -> AutoencoderKL -> CLIPModel scorer -> UNet + text encoder
- `check`         quality measurements of a trained pair (scorer and generator near-miss accuracy)
- `judge`         the simulated person of the bench's Oracle + Balance row
- `inputs`        a held-out subject as a user's input: references, captions, masks, anchors, test prompts
- `rows`          the bench's rows by key: Table 1's, the controls (DreamBooth trained less, its LoRA turned down),
                  the bench's own, its diagnostics and probes
- `players`       who picks in the bench's person-strategy rows: the simulated person, perfect images, composites
- `bench`         `gal bench`: every row per subject and seed, resumable, evaluated with the judge
- `results`       the bench's tables, envelope of training less, intervals and Figure 5 (docs/results.md)

The anchors, test prompts and reference set-up follow the GAL paper's (Zhang et al.; anchor lists
of the authors' public code), translated into this world's vocabulary.
"""

from gal.locations import WEIGHTS, bundled  # noqa: F401  (where the bundled weights are: gal.locations)

# `gal run` settings for the bundled model (its sampler's steps and guidance follow from the base: resolve.settle)
SETTINGS = {"base": "miniature", "scorer": "miniature"}
