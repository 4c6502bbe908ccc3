"""The miniature world: 32x32 procedural scenes with captions, for demonstrating GAL on a CPU.

A scene is a shape of a colour in a background, drawn in a style ("a red star on grass in striped
style"). Everything is numpy + PIL-free arithmetic, deterministic for (scene, seed): the seed only
draws small jitter (position, size, rotation, background details).

Held-out subjects play the part of the user's concept: two styles (mosaic, neon) and two object
instances (a two-tone star with a hole, a spotted ring). The pretraining sampler never draws them,
so a model pretrained here has to learn them through personalization.

    >>> scene = Scene("star", "red", "grass", "striped")
    >>> caption(scene)
    'a red star on grass in striped style'
    >>> caption(Scene("star", "red", "grass", None))  # the style left open
    'a red star on grass'
    >>> render(scene, seed=0).shape
    (32, 32, 3)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

SIZE = 32  # image side in pixels
SUPERSAMPLE = 4  # drawn at 4x and box-averaged, for anti-aliased edges

SHAPES = ("circle", "square", "triangle", "star", "heart", "ring", "cross", "diamond")
COLORS = {  # vivid colours, chosen to stand out against the muted backgrounds
    "red": (215, 35, 35),
    "orange": (245, 130, 20),
    "yellow": (245, 215, 30),
    "green": (30, 200, 70),
    "blue": (40, 90, 230),
    "purple": (145, 50, 195),
    "pink": (250, 120, 190),
}
BACKGROUNDS = {  # name -> caption phrase
    "grass": "on grass",
    "sky": "in the sky",
    "night": "at night",
    "sea": "in the sea",
    "desert": "in the desert",
    "snow": "in the snow",
    "brick": "by a brick wall",
}
STYLES = ("flat", "striped", "checkered", "dotted", "outlined", "gradient")
HELD_OUT_STYLES = ("mosaic", "neon")
ATTRIBUTES = ("shape", "color", "background", "style")


@dataclass(frozen=True)
class Scene:
    """What a picture shows. `shape` may name a held-out instance (then `color` is None: an
    instance has its own colours); None in color/background/style means "not said" in a caption."""

    shape: str
    color: str | None = None
    background: str | None = None
    style: str | None = "flat"


@dataclass(frozen=True)
class Subject:
    """A held-out subject of interest, the miniature counterpart of a user's concept.

    object: SoI phrase `a <token> class_word` ("a <spotted-ring> ring"); style: `in <token> style`.
    `plain` is the SoI phrase in plain words, for the scorer ("a ring", "in mosaic style").
    `reference` is the fixed content of the reference images: the non-SoI part that a personalized
    model may wrongly copy."""

    name: str
    kind: str  # "object" or "style"
    token: str
    description: str  # how the subject is captioned in the world's own grammar
    class_word: str | None
    reference: Scene
    n_references: int

    @property
    def phrase(self) -> str:
        return f"a {self.token} {self.class_word}" if self.kind == "object" else f"in {self.token} style"

    @property
    def plain(self) -> str:
        return f"a {self.class_word}" if self.kind == "object" else f"in {self.name} style"


INSTANCES = {  # held-out objects: name -> (class word, description)
    "twotone_star": ("star", "two-tone star with a hole"),
    "spotted_ring": ("ring", "spotted ring"),
}

SUBJECTS = {
    "mosaic": Subject("mosaic", "style", "<mosaic>", "mosaic", None, Scene("circle", "red", "grass", "mosaic"), 1),
    "neon": Subject("neon", "style", "<neon>", "neon", None, Scene("circle", "red", "grass", "neon"), 1),
    "twotone_star": Subject(
        "twotone_star", "object", "<twotone-star>", INSTANCES["twotone_star"][1], "star",
        Scene("twotone_star", None, "brick", "flat"), 4,
    ),
    "spotted_ring": Subject(
        "spotted_ring", "object", "<spotted-ring>", INSTANCES["spotted_ring"][1], "ring",
        Scene("spotted_ring", None, "brick", "flat"), 4,
    ),
}

# ---------------------------------------------------------------------------------------------
# Captions: "a|an [color] shape [background phrase] [in style style]"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption(scene: Scene) -> str:
    noun = INSTANCES[scene.shape][1] if scene.shape in INSTANCES else scene.shape
    words = [scene.color, noun] if scene.color else [noun]
    text = f"{_article(words[0])} {' '.join(words)}"
    if scene.background:
        text += " " + BACKGROUNDS[scene.background]
    if scene.style:  # stated, flat included: a caption without one leaves the style open, as CLIP's would
        text += f" in {scene.style} style"
    return text


def _alternation(words) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_NOUNS = {**{s: s for s in SHAPES}, **{desc: name for name, (_, desc) in INSTANCES.items()}}
_PHRASES = {phrase: name for name, phrase in BACKGROUNDS.items()}
_CAPTION_RE = re.compile(
    rf"^an? (?:(?P<color>{_alternation(COLORS)}) )?(?P<noun>{_alternation(_NOUNS)})"
    rf"(?: (?P<background>{_alternation(_PHRASES)}))?"
    rf"(?: in (?P<style>{_alternation(STYLES + HELD_OUT_STYLES)}) style)?$"
)


def parse_caption(text: str) -> Scene:
    """The inverse of `caption`; raises ValueError for text outside the grammar."""
    match = _CAPTION_RE.match(text.strip().lower())
    if not match:
        raise ValueError(f"caption {text!r} is not in the miniature grammar (e.g. 'a red star on grass in striped style')")
    background = match["background"]
    return Scene(
        shape=_NOUNS[match["noun"]],
        color=match["color"],
        background=_PHRASES[background] if background else None,
        style=match["style"],
    )


def one_off_scenes(scene: Scene) -> list[tuple[str, Scene]]:
    """Every held-in scene that differs from `scene` in exactly one stated attribute, as
    (attribute, scene). Used to test whether an image matches its caption better than near misses."""
    choices = {"shape": SHAPES, "color": tuple(COLORS), "background": tuple(BACKGROUNDS), "style": STYLES}
    out = []
    for attribute in ATTRIBUTES:
        value = getattr(scene, attribute)
        if value is None or (attribute == "shape" and value in INSTANCES):
            continue  # unstated attributes have no near miss; an instance has no plain twin
        out += [(attribute, replace(scene, **{attribute: v})) for v in choices[attribute] if v != value]
    return out


def one_off_captions(scene: Scene) -> list[tuple[str, str]]:
    """(attribute, caption) for each one-attribute-off scene of `scene`."""
    return [(attribute, caption(s)) for attribute, s in one_off_scenes(scene)]


# ---------------------------------------------------------------------------------------------
# Rendering. Coordinates: the canvas spans [-1, 1]^2 with y pointing up; objects are drawn in
# their own local frame (unit size) so that textures turn with them.

_N = SIZE * SUPERSAMPLE
_axis = ((np.arange(_N) + 0.5) / _N * 2 - 1).astype(np.float32)
_X, _Y = np.meshgrid(_axis, -_axis)  # _Y up
_ROWS = np.broadcast_to((_axis[:, None] + 1) / 2, (_N, _N))  # 0 at top, 1 at bottom
_COLS = np.broadcast_to((_axis[None, :] + 1) / 2, (_N, _N))


def _rgb(c) -> np.ndarray:
    return np.asarray(c, dtype=np.float32) / 255.0


def _polygon(u, v, points) -> np.ndarray:
    """Even-odd point-in-polygon test, vectorised over the grid."""
    inside = np.zeros(u.shape, dtype=bool)
    n = len(points)
    for i in range(n):
        (x1, y1), (x2, y2) = points[i], points[(i + 1) % n]
        crosses = (y1 > v) != (y2 > v)
        x_at = (x2 - x1) * (v - y1) / (y2 - y1 + 1e-12) + x1
        inside ^= crosses & (u < x_at)
    return inside


def _star_points(outer=1.0, inner=0.45):
    angles = np.pi / 2 + np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, outer, inner)
    return list(zip(radii * np.cos(angles), radii * np.sin(angles)))


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of a plain shape (or an instance's outline) in local coordinates."""
    r = np.hypot(u, v)
    if shape == "circle":
        return r < 0.9
    if shape == "square":
        return np.maximum(abs(u), abs(v)) < 0.75
    if shape == "triangle":
        return _polygon(u, v, [(0, 0.95), (-0.95, -0.7), (0.95, -0.7)])
    if shape in ("star", "twotone_star"):
        if shape == "star":
            return _polygon(u, v, _star_points())
        return _polygon(u, v, _star_points(1.05, 0.6)) & (r > 0.3)  # the instance: plumper, with a hole
    if shape == "heart":
        x, y = u * 1.25, v * 1.25 + 0.2
        return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 < 0
    if shape == "ring":
        return (r > 0.55) & (r < 0.95)
    if shape == "spotted_ring":
        return (r > 0.5) & (r < 0.97)
    if shape == "cross":
        return ((abs(u) < 0.3) & (abs(v) < 0.92)) | ((abs(v) < 0.3) & (abs(u) < 0.92))
    if shape == "diamond":
        return abs(u) / 0.75 + abs(v) / 0.98 < 1
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES + tuple(INSTANCES)}")


def _instance_colors(shape: str, u, v) -> np.ndarray:
    """The fixed look of a held-out instance: per-pixel colours in its local frame."""
    if shape == "twotone_star":  # gold left of a slanted line, crimson right of it
        return np.where((u + 0.3 * v > 0)[..., None], _rgb((200, 25, 70)), _rgb((250, 190, 30)))
    if shape == "spotted_ring":  # teal ring with six orange spots
        color = np.broadcast_to(_rgb((0, 165, 160)), u.shape + (3,)).copy()
        for a in np.arange(6) * np.pi / 3 + 0.3:
            spot = np.hypot(u - 0.74 * np.cos(a), v - 0.74 * np.sin(a)) < 0.2
            color[spot] = _rgb((250, 120, 20))
        return color
    raise ValueError(f"{shape!r} is not a held-out instance")


def _erode(mask: np.ndarray, steps: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(steps):
        shrunk = out.copy()
        shrunk[1:] &= out[:-1]
        shrunk[:-1] &= out[1:]
        shrunk[:, 1:] &= out[:, :-1]
        shrunk[:, :-1] &= out[:, 1:]
        out = shrunk
    return out


def _texture(style: str, color: np.ndarray, u, v, mask) -> tuple[np.ndarray, np.ndarray]:
    """Apply a held-in style to the object's colours; returns (colours, mask actually painted)."""
    white = np.ones(3, dtype=np.float32)
    if style == "flat":
        return color, mask
    if style == "striped":  # dark diagonal stripes, ~2 px wide
        dark = ((u + v) * 2.4) % 1.0 < 0.5
        return np.where(dark[..., None], color * 0.3, color), mask
    if style == "checkered":
        light = (np.floor(u * 2.6) + np.floor(v * 2.6)) % 2 == 1
        return np.where(light[..., None], color * 0.25 + white * 0.75, color), mask
    if style == "dotted":
        du, dv = (u * 2.2) % 1.0 - 0.5, (v * 2.2) % 1.0 - 0.5
        return np.where((du**2 + dv**2 < 0.09)[..., None], white, color), mask
    if style == "outlined":  # only a 2-px rim is painted; the background shows inside
        return color, mask & ~_erode(mask, 2 * SUPERSAMPLE)
    if style == "gradient":  # pale at the top of the object, dark at its bottom
        t = np.clip((0.9 - v) / 1.8, 0, 1)[..., None]
        return np.where(t < 0.5, color + (white - color) * (0.6 - 1.2 * t), color * (1.6 - 1.2 * t)), mask
    raise ValueError(f"unknown style {style!r}; expected one of {STYLES + HELD_OUT_STYLES}")


def _background(name: str, rng: np.random.Generator) -> np.ndarray:
    y, x = _ROWS, _COLS
    out = np.empty((_N, _N, 3), dtype=np.float32)

    def vertical(top, bottom):  # computed per row, then broadcast: rendering speed matters here
        t = y[:, :1, None]
        return np.broadcast_to(_rgb(top) * (1 - t) + _rgb(bottom) * t, (_N, _N, 3))

    if name == "grass":
        horizon = rng.uniform(0.45, 0.6)
        out[:] = vertical((120, 180, 235), (185, 220, 245))
        blades = np.repeat(rng.uniform(0.75, 1.15, SIZE), SUPERSAMPLE)[None, :]  # per-column shade
        ground = y > horizon + 0.04 * np.sin(x * 7 + rng.uniform(0, 6))
        out[ground] = (_rgb((80, 125, 40)) * (blades * (0.9 + 0.2 * (1 - y)))[..., None])[ground]
    elif name == "sky":
        out[:] = vertical((80, 140, 225), (175, 210, 245))
        for _ in range(2):  # clouds: three overlapping puffs each
            cx, cy = rng.uniform(0.1, 0.9), rng.uniform(0.15, 0.85)
            for dx, dr in ((-0.09, 0.07), (0.0, 0.1), (0.09, 0.07)):
                out[(x - cx - dx) ** 2 + ((y - cy) * 1.6) ** 2 < dr**2] = _rgb((245, 245, 250))
    elif name == "night":
        out[:] = vertical((10, 12, 40), (35, 40, 85))
        for _ in range(12):  # stars: single bright pixels
            r, c = rng.integers(0, SIZE, 2) * SUPERSAMPLE
            out[r : r + SUPERSAMPLE, c : c + SUPERSAMPLE] = _rgb((255, 250, 210))
    elif name == "sea":
        horizon = rng.uniform(0.25, 0.38)
        out[:] = vertical((175, 210, 240), (200, 225, 245))
        water = y > horizon
        out[water] = vertical((20, 70, 140), (10, 40, 100))[water]
        crest = water & (np.sin((y - 0.05 * np.sin(x * 14 + rng.uniform(0, 6))) * 55) > 0.8)
        out[crest] = _rgb((110, 165, 220))
    elif name == "desert":
        horizon = rng.uniform(0.4, 0.55)
        out[:] = vertical((250, 205, 150), (250, 230, 190))
        sand = y > horizon + 0.06 * np.sin(x * 5 + rng.uniform(0, 6))
        ripple = 0.92 + 0.08 * np.sin((y * 40 + np.sin(x * 6) * 2))
        out[sand] = (_rgb((215, 170, 95)) * ripple[..., None])[sand]
    elif name == "snow":
        horizon = rng.uniform(0.5, 0.62)
        out[:] = vertical((150, 160, 180), (195, 200, 215))
        ground = y > horizon
        out[ground] = vertical((235, 240, 250), (210, 220, 240))[ground]
        for _ in range(14):  # falling flakes in the air
            r, c = rng.integers(0, int(horizon * SIZE), 1)[0] * SUPERSAMPLE, rng.integers(0, SIZE) * SUPERSAMPLE
            out[r : r + SUPERSAMPLE, c : c + SUPERSAMPLE] = 1.0
    elif name == "brick":
        row = np.floor(y * 8 + rng.uniform(0, 1))
        col = np.floor(x * 4 + 0.5 * (row % 2))
        shade = rng.uniform(0.85, 1.1, (10, 6))[row.astype(int) % 10, col.astype(int) % 6]
        out[:] = _rgb((150, 65, 45)) * shade[..., None]
        mortar = ((y * 8 + 0.02) % 1 < 0.12) | ((x * 4 + 0.5 * (row % 2)) % 1 < 0.06)
        out[mortar] = _rgb((195, 185, 170))
    else:
        raise ValueError(f"unknown background {name!r}; expected one of {tuple(BACKGROUNDS)}")
    return out


def _downsample(image: np.ndarray) -> np.ndarray:
    return image.reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE, image.shape[-1]).mean(axis=(1, 3))


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an (H, W, C) array, edges clamped."""
    radius = int(3 * sigma) + 1
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    padded = np.pad(image, ((radius, radius), (0, 0), (0, 0)), mode="edge")
    image = sum(w * padded[i : i + image.shape[0]] for i, w in enumerate(k))
    padded = np.pad(image, ((0, 0), (radius, radius), (0, 0)), mode="edge")
    return sum(w * padded[:, i : i + image.shape[1]] for i, w in enumerate(k))


def render(scene: Scene, seed: int = 0) -> np.ndarray:
    """Draw `scene` as a (32, 32, 3) uint8 array. Unstated attributes are drawn from the seed."""
    rng = np.random.default_rng(seed)
    scene = _fill_unstated(scene, rng)
    # Jitter: position, size and a small rotation (small, so a square never looks like a diamond).
    cx, cy = rng.uniform(-0.15, 0.15, 2)
    scale = rng.uniform(0.55, 0.72)
    angle = rng.uniform(-0.25, 0.25)
    cos, sin = np.cos(angle), np.sin(angle)
    dx, dy = (_X - cx) / scale, (_Y - cy) / scale
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy

    image = _background(scene.background, rng)
    mask = shape_mask(scene.shape, u, v)
    if scene.shape in INSTANCES:
        color = _instance_colors(scene.shape, u, v)
    else:
        color = np.broadcast_to(_rgb(COLORS[scene.color]), u.shape + (3,))

    if scene.style in HELD_OUT_STYLES:
        return _held_out_style(scene.style, image, color, mask, rng)
    color, painted = _texture(scene.style, color, u, v, mask)
    if scene.style != "outlined":  # a dark 1-px rim keeps the object apart from a similar background
        color = np.where((mask & ~_erode(mask, SUPERSAMPLE))[..., None], color * 0.55, color)
    image = np.where(painted[..., None], color, image)
    return _to_uint8(_downsample(image))


def _held_out_style(style: str, background, color, mask, rng) -> np.ndarray:
    """Held-out styles treat the whole picture, as a painting style would."""
    if style == "mosaic":  # 2-px tiles of sampled colour, brightness-jittered, with dark grout
        flat = _downsample(np.where(mask[..., None], color, background))
        tiles = flat[1::3, 1::3]  # one sample per 3x3 cell
        tiles = tiles * rng.uniform(0.8, 1.15, tiles.shape[:2] + (1,))
        image = np.repeat(np.repeat(tiles, 3, axis=0), 3, axis=1)[:SIZE, :SIZE]
        grout = np.arange(SIZE) % 3 == 2
        image[grout, :] *= 0.35
        image[:, grout] *= 0.35
        return _to_uint8(image)
    if style == "neon":  # dim scene, a glowing pale rim around a dark body
        rim = _downsample(np.repeat((mask & ~_erode(mask, SUPERSAMPLE))[..., None], 3, axis=2).astype(np.float32))
        light = _downsample(np.asarray(color, dtype=np.float32)) * 0.5 + 0.5
        glow = _blur(rim * light, 1.5)
        body = _downsample(mask[..., None].astype(np.float32))
        image = _downsample(background) * 0.22 * (1 - body) + body * 0.08
        return _to_uint8(image + 2.2 * glow + rim * light)
    raise ValueError(f"{style!r} is not a held-out style")


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)


def _fill_unstated(scene: Scene, rng: np.random.Generator) -> Scene:
    if scene.shape not in INSTANCES and scene.color is None:
        scene = replace(scene, color=str(rng.choice(list(COLORS))))
    if scene.background is None:
        scene = replace(scene, background=str(rng.choice(list(BACKGROUNDS))))
    if scene.style is None:
        scene = replace(scene, style="flat")
    return scene


# ---------------------------------------------------------------------------------------------
# Data sets


def random_scene(rng: np.random.Generator, include_held_out: bool = False) -> Scene:
    """A uniformly random held-in scene; with include_held_out, a quarter of draws use a held-out
    style or instance instead (the scorer is trained on those: it plays CLIP, which knows words
    the base generator must learn through personalization)."""
    scene = Scene(
        shape=str(rng.choice(SHAPES)), color=str(rng.choice(list(COLORS))),
        background=str(rng.choice(list(BACKGROUNDS))), style=str(rng.choice(STYLES)),
    )
    if include_held_out and rng.random() < 0.25:
        if rng.random() < 0.5:
            scene = replace(scene, style=str(rng.choice(HELD_OUT_STYLES)))
        else:
            scene = replace(scene, shape=str(rng.choice(list(INSTANCES))), color=None)
    return scene


def is_held_out(scene: Scene) -> bool:
    return scene.style in HELD_OUT_STYLES or scene.shape in INSTANCES


def sample_scenes(n: int, seed: int, include_held_out: bool = False) -> list[tuple[Scene, int]]:
    """n random (scene, render seed) pairs; held-in only unless include_held_out."""
    rng = np.random.default_rng([seed, 1])
    return [(random_scene(rng, include_held_out), int(rng.integers(2**31))) for _ in range(n)]


def render_dataset(n: int, seed: int, include_held_out: bool = False) -> tuple[np.ndarray, list[str], list[Scene]]:
    """The pretraining set: (uint8 images (n, 32, 32, 3), full captions, scenes)."""
    pairs = sample_scenes(n, seed, include_held_out)
    images = np.stack([render(scene, s) for scene, s in pairs])
    return images, [caption(scene) for scene, _ in pairs], [scene for scene, _ in pairs]


def reference_images(name: str, n: int | None = None, seed: int = 0) -> tuple[np.ndarray, list[str], list[str]]:
    """Reference images of a held-out subject on its fixed content, with their reference prompts
    (SoI phrase with the placeholder token) and non-SoI captions (Eq. 8's distractor text).

    >>> images, prompts, non_soi = reference_images("mosaic")
    >>> prompts[0], non_soi[0]
    ('a red circle on grass in <mosaic> style', 'a red circle on grass')
    """
    subject = SUBJECTS[name]
    n = subject.n_references if n is None else n
    rng = np.random.default_rng([seed, 2])
    images = np.stack([render(subject.reference, int(rng.integers(2**31))) for _ in range(n)])
    ref = subject.reference
    if subject.kind == "style":
        content = caption(replace(ref, style=None))  # the content only: Eq. 8's text leaves the style open
        prompt = f"{content} {subject.phrase}"
    else:
        content = caption(Scene(subject.class_word, None, ref.background, ref.style))
        prompt = content.replace(f"a {subject.class_word}", subject.phrase, 1)
    return images, [prompt] * n, [content] * n


def cutouts(name: str, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each of `reference_images(name)` with its subject's pixels, (32, 32) bool, as a user's mask (`NAME.mask.png`)
    marks them: the pixels its render keeps whatever the background (the same seed on four backgrounds; the
    anti-aliased rim, part subject and part background, is left out)."""
    subject = SUBJECTS[name]
    rng = np.random.default_rng([seed, 2])  # reference_images' seeds
    out = []
    for _ in range(subject.n_references):
        s = int(rng.integers(2**31))
        on = [render(replace(subject.reference, background=b), s) for b in list(BACKGROUNDS)[:4]]
        out.append((render(subject.reference, s), np.all([(on[0] == other).all(-1) for other in on[1:]], axis=0)))
    return out


# ---------------------------------------------------------------------------------------------
# Anchors and test prompts. Built like the paper's: object anchors put the subject in the
# world's contexts ("{} in a museum" -> "{} at night"), style anchors are world contents
# ("A koala {}" -> "a blue square {}"). None uses the references' content (objects: by a brick
# wall in flat style; styles: a red circle on grass), so every anchor differs from the non-SoI text.

OBJECT_ANCHORS = [
    "{} on grass", "{} in the sky", "{} at night", "{} in the sea", "{} in the desert", "{} in the snow",
    "{} on grass in striped style", "{} in the sky in dotted style", "{} at night in checkered style",
    "{} in the sea in outlined style", "{} in the desert in gradient style", "{} in the snow in striped style",
    "{} on grass in checkered style", "{} in the sky in gradient style", "{} at night in outlined style",
    "{} in the sea in dotted style", "{} in the desert in checkered style", "{} in the snow in dotted style",
]
STYLE_ANCHORS = [
    "a blue square {}", "a green heart {}", "a yellow star {}", "a purple ring {}", "an orange cross {}",
    "a pink diamond {}", "a red triangle {}", "a blue circle at night {}", "a green star in the sea {}",
    "a yellow heart in the snow {}", "a purple square in the desert {}", "an orange ring in the sky {}",
    "a pink cross on grass {}", "a red diamond by a brick wall {}", "a blue triangle in the desert {}",
    "a green circle in the snow {}", "a yellow cross at night {}", "a purple triangle on grass {}",
]
OBJECT_TEST_PROMPTS = [
    "{} by a brick wall in striped style", "{} by a brick wall in dotted style", "{} by a brick wall in gradient style",
    "{} on grass in dotted style", "{} on grass in outlined style", "{} on grass in gradient style",
    "{} in the sky in striped style", "{} in the sky in checkered style", "{} in the sky in outlined style",
    "{} at night in striped style", "{} at night in dotted style", "{} at night in gradient style",
    "{} in the sea in striped style", "{} in the sea in checkered style", "{} in the sea in gradient style",
    "{} in the desert in striped style", "{} in the desert in dotted style", "{} in the snow in checkered style",
    "{} in the snow in outlined style", "{} in the snow in gradient style",
]
STYLE_TEST_PROMPTS = [
    "a red square {}", "a blue heart {}", "a green triangle {}", "a yellow ring {}", "a purple star {}",
    "an orange diamond {}", "a pink circle {}", "a red star at night {}", "a blue ring in the sea {}",
    "a green square by a brick wall {}", "a yellow triangle in the sky {}", "a purple heart on grass {}",
    "an orange circle in the snow {}", "a pink triangle in the desert {}", "a red heart in the sky {}",
    "a blue diamond on grass {}", "a green cross in the desert {}", "a yellow square in the sea {}",
    "a purple diamond at night {}", "a pink ring by a brick wall {}",
]


def world_words() -> list[str]:
    """Every word the world's captions and prompts use (for the tokenizer's whole-word tokens)."""
    texts = [caption(Scene(s, c, b, st)) for s in SHAPES for c in COLORS for b in BACKGROUNDS for st in STYLES + HELD_OUT_STYLES]
    texts += [caption(Scene(i, None, "grass")) for i in INSTANCES]
    texts += [t.format("") for t in OBJECT_ANCHORS + STYLE_ANCHORS + OBJECT_TEST_PROMPTS + STYLE_TEST_PROMPTS]
    texts += [s.token.strip("<>").replace("-", " ") + " " + (s.class_word or "") for s in SUBJECTS.values()]
    return sorted({w for t in texts for w in re.findall(r"[a-z]+|[^\sa-z]", t.lower())})
