import os

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing in the tests may reach a hub
os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny models gain nothing from threads; oversubscription costs a lot

import pytest
import torch
from hypothesis import settings

settings.register_profile("gal", deadline=None)  # timing varies on shared CI machines; correctness does not
settings.load_profile("gal")

torch.set_num_threads(1)

from gal.builders import build_clip, build_pipeline, write_references  # noqa: E402  (after the environment above)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A tiny random SD pipeline and CLIP scorer saved in the real layouts, plus reference images."""
    root = tmp_path_factory.mktemp("tiny")
    build_pipeline(root / "pipeline")
    build_clip(root / "clip")
    write_references(root / "references")
    anchors = root / "anchors6.txt"
    anchors.write_text("{} in a workshop\n{} in a museum\n{} on a plane\n{} on a boat\n{} in a garden\n{} under a tree\n")
    return root


def run_args(tiny, out, *extra):
    """A small but complete `gal run` command line on the tiny models."""
    return ["run", "--base", str(tiny / "pipeline"), "--scorer", str(tiny / "clip"),
            "--references", str(tiny / "references"), "--subject", "a <sks> ball", "--non-soi", "a ball on grass",
            "--anchors", str(tiny / "anchors6.txt"), "--m", "4", "--k", "2", "--train-steps", "4", "--steps", "3",
            "--no-prior", "--out", str(out), *extra]
