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


# The longest tests (a minute or more each on 2 cores), first: with two xdist workers, one of them started last would
# keep its worker busy after the other has finished (`make test`'s wall time, not a test's behaviour).
LONGEST = ("test_the_readme_api_example_runs_as_written", "test_a_killed_two_process_run_resumes_to_the_uninterrupted_result",
           "test_three_kills_resume_to_the_uninterrupted_result", "test_gal_run_and_eval_on_the_miniature_model",
           "test_miniature_bench_plumbing_on_tiny_models", "test_two_processes_match_one")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.originalname not in LONGEST)  # stable: the rest keep their order
