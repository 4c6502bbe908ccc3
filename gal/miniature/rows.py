"""The rows of `gal bench` on the miniature world: what each runs (a `gal.suite.Row`), under its key. A summary's
entry, `--rows` and a GAL row's run folder name a row by its key; its display name (`Row.name`) appears only where
a table or plot is written (`gal.miniature.results`)."""

from __future__ import annotations

from gal.suite import TABLE1, Row

# The DreamBooth rows, without GAL. Round 1 of every row is DreamBooth at the default step count (the baseline,
# Table 1's first row); the controls a user has without GAL are DreamBooth trained less and its LoRA turned down at
# inference (the cheapest control of all); the next is trained on as many reference draws as Uncertainty + Balance's
# last round. With masks (objects), the field's own answer to copied backgrounds is a control too: DreamBooth with
# masked loss (`gal run --masked-loss`, kohya's --masked_loss), at the default step count, fewer and turned down.
MASKED_LOSS = {"masked_loss": 0.0}
DREAMBOOTH_ROWS = [TABLE1[0], Row("fewer-steps", "DreamBooth, fewer steps", "none", "off"),
                   Row("lora-scale", "DreamBooth, LoRA scale", "none", "off"),
                   Row("exposure", "DreamBooth, exposure-matched", "none", "off"),
                   Row("masked", "DreamBooth, masked loss", "none", "off", MASKED_LOSS),
                   Row("masked-fewer-steps", "DreamBooth, masked loss, fewer steps", "none", "off", MASKED_LOSS),
                   Row("masked-lora-scale", "DreamBooth, masked loss, LoRA scale", "none", "off", MASKED_LOSS)]
BASELINE, FEWER, SCALED, EXPOSURE, MASKED, MASKED_FEWER, MASKED_SCALED = (r.key for r in DREAMBOOTH_ROWS)

# Table 1's rows (the baseline is round 1, which every row shares), then the bench's own
ROWS = TABLE1[1:] + [
    Row("separate", "Uncertainty + separate balance", "uncertainty", "separate"),
    Row("guidance2", "Uncertainty + Balance, query guidance 2", "uncertainty", "paper", {"query_guidance": 2.0}),
    # picks that keep the subject (`gal run --pick`), at a real weight: the added images must be good to be worth it
    Row("pick-kept-off", "Uncertainty, kept-subject pick", "uncertainty", "off", {"pick": "kept"}),
    Row("pick-identity-off", "Uncertainty, identity pick", "uncertainty", "off", {"pick": "identity"}),
    Row("pick-identity-separate", "Uncertainty + separate balance, identity pick", "uncertainty", "separate",
        {"pick": "identity"}),
    # gal's object default (gal/composite.py), through `gal run` itself: the composite probe's winner made an option
    Row("composite", "Uncertainty, composites (gal's object default)", "uncertainty", "off", added="composite"),
    # the same with masked loss on the references (round 1: DreamBooth with masked loss, the control "masked")
    Row("composite-masked", "Uncertainty, composites, masked loss", "uncertainty", "off", MASKED_LOSS, added="composite"),
]
# Diagnostics a user does not have: after round 1, the world's own renders of the subject in the anchors'
# contexts replace the added images (three in GAL's top-k directions, Eq. 10 set aside; or one per anchor), then
# round 2 trains with them. The ceiling of what any pick can reach at that number of added images.
PERFECT = {"perfect3-off": 3, "perfect3-paper": 3, "perfect3-separate": 3,
           "perfect18-off": 18, "perfect18-paper": 18, "perfect18-separate": 18}
WEIGHTS = {"off": "weight 1", "paper": "weight Δ", "separate": "separate"}
PERFECT_ROWS = [Row(key, f"Perfect images x{n}, {WEIGHTS[key.split('-')[1]]} (diagnostic)", "human", key.split("-")[1])
                for key, n in PERFECT.items()]
# A probe of the generation side: the subject cut from the user's own references (by their masks, which gal already
# reads: `NAME.mask.png`) and pasted onto a picture of the anchor, so that an added image keeps the subject by
# construction and follows the anchor as far as its picture does: the round's own query samples, or the base model's
# samples of the anchor in plain words (it was never fine-tuned on the references, so it does not copy them). GAL's
# top-k directions (Eq. 10 set aside) or every direction; of each, the composite the scorer finds closest to its
# anchor (s_a). "clear": the base model's samples with their own object cleared first where the subject goes (its
# outline grown, filled from around: `composite.paste(clear=...)`), so that no other object shows through the
# subject's holes or round its edge. "restyle": where the anchor states a style, the cleared composite is then redrawn
# by the base model a little way (img2img), since a pasted subject is always flat ("restyle-noclear": the same without
# clearing). The probe that chose gal/composite.py's steps; `gal run --added composite` is its "restyle", the row
# "composite" runs it through `gal run` itself.
COMPOSITE = {"composite3-off": (3, "query"), "composite18-off": (18, "query"), "composite18-separate": (18, "query"),
             "composite3-base-off": (3, "base"), "composite18-base-off": (18, "base"),
             "composite3-clear-off": (3, "clear"), "composite18-clear-off": (18, "clear"),
             "composite3-restyle-off": (3, "restyle"), "composite18-restyle-off": (18, "restyle"),
             "composite18-restyle-noclear-off": (18, "restyle-noclear")}
_ON = {"query": "", "base": " on the base model's samples", "clear": " on the base model's samples, cleared",
       "restyle": " on the base model's samples, cleared, restyled", "restyle-noclear": " on the base model's samples, restyled"}
COMPOSITE_ROWS = [Row(key, f"Composites x{n}{_ON[on]}, {WEIGHTS[key.split('-')[-1]]} (probe)", "human",
                      key.split("-")[-1]) for key, (n, on) in COMPOSITE.items()]
TWO_ROUNDS = set(PERFECT) | set(COMPOSITE)  # rows that stop after round 2: no round to choose

ROW_KEYS = [FEWER, SCALED, EXPOSURE, MASKED, MASKED_FEWER, MASKED_SCALED] + [r.key for r in ROWS + PERFECT_ROWS + COMPOSITE_ROWS]  # `--rows`; all by default
QUICK_ROWS = [FEWER, SCALED, EXPOSURE] + [r.key for r in TABLE1[1:]]  # `--quick`: the controls and Table 1
NAMES = {r.key: r.name for r in DREAMBOOTH_ROWS + ROWS + PERFECT_ROWS + COMPOSITE_ROWS}  # key -> name, tables' order

# What a summary written before rows were keyed names them (`gal.miniature.results.read_summary`): besides each
# row's display name, earlier ones; and the controls' earlier --rows keys
RENAMED = {"Oracle + Balance": "oracle", "frontier": FEWER, "scale": SCALED}


def row_key(name: str, judged: bool = True) -> str:
    """The key of the row a summary names `name`: its key, its display name or an earlier one (`RENAMED`). A bench
    without the judge's metrics (`judged`: False) predates them, and its Random had the weight Δ, not the paper's
    weight 1: a row of its own, "random-delta", in no table."""
    if name == "Random" and not judged:
        return "random-delta"
    return {n: k for k, n in NAMES.items()}.get(name) or RENAMED.get(name, name)
