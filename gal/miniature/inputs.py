"""A held-out subject of the miniature world as a user's input: its reference image (with its caption; an object's
with its mask), the world's 18 anchors for its kind and its test prompts, written into a folder (`gal demo`, `gal
bench`, `gal miniature check`)."""

from __future__ import annotations

from pathlib import Path

from gal.errors import GalError


def inputs(work: Path, subject: str) -> tuple[dict, Path]:
    """Reference, anchors and test prompts of a held-out miniature subject, written into `work`; returns
    the `gal.Config` fields for it and the test prompt file."""
    from PIL import Image

    from gal.miniature import world

    if subject not in world.SUBJECTS:
        raise GalError(f"--subject {subject}: not a held-out subject of the miniature world; "
                       f"expected one of {', '.join(world.SUBJECTS)}")
    s = world.SUBJECTS[subject]
    refs = work / "references"
    refs.mkdir(parents=True, exist_ok=True)
    images, _, captions = world.reference_images(subject)
    for i, (image, caption) in enumerate(zip(images, captions)):
        Image.fromarray(image).save(refs / f"{subject}-{i}.png")
        (refs / f"{subject}-{i}.txt").write_text(caption + "\n")
    if s.kind == "object":  # its masks, as a user draws them: `gal run` then adds composites (gal/composite.py)
        for i, (_, mask) in enumerate(world.cutouts(subject)):
            Image.fromarray(mask.astype("uint8") * 255).save(refs / f"{subject}-{i}.mask.png")
    anchors = world.STYLE_ANCHORS if s.kind == "style" else world.OBJECT_ANCHORS
    (work / "anchors.txt").write_text("".join(t + "\n" for t in anchors))
    tests = world.STYLE_TEST_PROMPTS if s.kind == "style" else world.OBJECT_TEST_PROMPTS
    (work / "test_prompts.txt").write_text("".join(t + "\n" for t in tests))
    fields = {"references": str(refs), "kind": s.kind, "subject": s.phrase, "subject_plain": s.plain,
              "anchors": str(work / "anchors.txt")}
    return fields, work / "test_prompts.txt"
