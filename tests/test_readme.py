"""The Python API example of the README runs as written, on the bundled miniature model (this is a CPU)."""

import re
from pathlib import Path

import pytest
from PIL import Image

from gal.miniature import bundled, world

README = Path(__file__).parents[1] / "README.md"


def api_example() -> str:
    text = README.read_text()
    section = text[text.index("## The Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_api_example_runs_as_written(tmp_path, monkeypatch, capsys):
    assert bundled() is not None  # the example's CPU default is the bundled miniature model, in this repository
    monkeypatch.chdir(tmp_path)
    photos = Path("photos/my-style")
    photos.mkdir(parents=True)
    images, _, captions = world.reference_images("mosaic")  # a held-out style of the miniature world
    Image.fromarray(images[0]).save(photos / "painting.png")
    (photos / "painting.txt").write_text(captions[0] + "\n")

    # The style test prompts are 190 PartiPrompts x 4 images: 760 images, ~15 minutes on 2 cores. The example runs
    # as written; its evaluation reads only the first 6 prompts here (of the validation split too).
    from gal import metrics

    every, anchors = metrics.test_prompts, metrics.validation_prompts
    monkeypatch.setattr(metrics, "test_prompts", lambda *a, **kw: every(*a, **kw)[:6])
    monkeypatch.setattr(metrics, "validation_prompts", lambda *a, **kw: anchors(*a, **kw)[:6])  # and the split's
    from gal import resolve

    monkeypatch.setitem(resolve.AUTHORS["style"], "train_steps", 100)  # of the authors' 500: the example's API, not
    monkeypatch.setattr(resolve, "MINIATURE_SAMPLER", (5, 4.0))  # its model; and 5 sampling steps of 20
    scope = {}
    exec(compile(api_example(), "README.md", "exec"), scope)

    assert scope["config"].base is None  # the example leaves the models to the defaults
    run = scope["run"]
    trained = [r.number for r in run.rounds if r.checkpoint]
    assert [r["round"] for r in scope["rows"]] == trained and trained[0] == 1  # Eq. 10 may end it after round 1
    assert len(run.rounds[0].directions) == 18 and scope["summary"]["status"] == "finished"
    recommended = run.recommended
    assert recommended["round"] in trained and recommended["why"] in capsys.readouterr().out
    assert recommended["checkpoint"].exists()


def test_every_relative_link_of_the_readme_and_the_docs_names_a_file_that_exists():
    """The README sends a newcomer to docs/ pages: a moved or renamed page must not leave a dead link."""
    pages = [README] + sorted((README.parent / "docs").glob("*.md"))
    dead = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            path = target.split("#")[0]
            if path and not re.match(r"[a-z]+:", path) and not (page.parent / path).exists():
                dead.append(f"{page.name}: {target}")
    assert not dead, dead
