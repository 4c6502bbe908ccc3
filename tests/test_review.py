"""Strategy human: the run waits, a person reviews in the browser, the run goes on. Plus the report."""

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time

import pytest
from starlette.testclient import TestClient

from gal.cli import main
from gal.review import create_app

from conftest import run_args

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def reviews(out):
    return sqlite3.connect(out / "gal.sqlite").execute(
        "SELECT round, anchor_idx, j, accepted FROM review ORDER BY round, anchor_idx, j").fetchall()


@pytest.fixture
def waiting(human_run, tmp_path):
    """A copy of the session's human run, waiting for its first review."""
    return human_run.copy(tmp_path / "run").folder


def test_human_run_waits_then_continues_with_the_picked_images(waiting, tiny, capsys):
    app = TestClient(create_app(waiting, "secret"))
    assert app.post("/submit?token=secret", json={"round": 1, "accepted": ["a0-j1", "a3-j2", "a3-j0"]}).status_code == 200
    assert main(run_args(tiny, waiting, "--rounds", "3", "--strategy", "human", "--balance")) == 0
    summary = json.loads(_last_json(waiting, capsys))
    r1 = summary["rounds"][0]
    assert sorted(a["path"] for a in r1["added"]) == sorted(
        ["rounds/1/samples/a000-j01.png", "rounds/1/samples/a003-j00.png", "rounds/1/samples/a003-j02.png"])
    assert all(a["weight"] == pytest.approx(r1["openness"]) for a in r1["added"])  # the balance scheme
    assert {a["index"] for a in r1["anchors"] if a["selected"]} == {0, 3}
    assert summary["status"] == "waiting for review" and summary["rounds"][1]["anchors"]
    assert {a["index"] for a in summary["rounds"][1]["anchors"]} == {1, 2, 4, 5}  # chosen directions left the pool


def _last_json(run_dir, capsys):
    capsys.readouterr()
    assert main(["show", str(run_dir), "--json"]) == 0
    return capsys.readouterr().out


def test_every_request_needs_the_token(waiting):
    app = TestClient(create_app(waiting, "secret"))
    for path in ("/", "/file/rounds/1/samples/a000-j00.png", "/?token=wrong"):
        assert app.get(path).status_code == 403
    assert app.post("/submit", json={"round": 1, "accepted": []}).status_code == 403
    assert app.get("/?token=secret").status_code == 200
    assert app.get("/file/rounds/1/samples/a000-j00.png?token=secret").headers["content-type"] == "image/png"


def test_only_images_inside_the_run_are_served(waiting, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG not yours")
    (waiting / "rounds" / "1" / "samples" / "link.png").symlink_to(secret)
    app = TestClient(create_app(waiting, "t"))
    for path in ("/file/../secret.png", "/file/%2e%2e/secret.png", "/file/rounds/../../secret.png",
                 f"/file/{secret}", "/file//etc/passwd", "/file/gal.sqlite", "/file/config.yaml",
                 "/file/rounds/1/samples/link.png", "/file/rounds/1/samples/missing.png"):
        assert app.get(path + "?token=t").status_code == 404, path


def test_submissions_are_checked_against_the_pending_round(waiting):
    app = TestClient(create_app(waiting, "t"))
    before = (waiting / "gal.sqlite").read_bytes()
    assert app.post("/submit?token=t", json={"round": 1, "accepted": ["a0-j99"]}).status_code == 400
    assert app.post("/submit?token=t", json={"round": 1, "accepted": ["../a0-j1"]}).status_code == 400
    assert app.post("/submit?token=t", json={"round": 2, "accepted": ["a0-j1"]}).status_code == 409
    assert app.post("/submit?token=t", content=b"not json", headers={"content-type": "application/json"}).status_code == 400
    assert (waiting / "gal.sqlite").read_bytes() == before
    assert app.post("/submit?token=t", json={"round": 1, "accepted": ["a0-j1"]}).status_code == 200
    assert app.post("/submit?token=t", json={"round": 1, "accepted": ["a2-j1"]}).status_code == 409  # closed
    assert reviews(waiting) == [(1, 0, 1, 1)]


def test_review_refuses_runs_of_other_strategies(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(run_args(tiny, out, "--rounds", "1")) == 0
    assert main(["review", str(out)]) == 2
    assert "only --strategy human runs" in capsys.readouterr().err


@pytest.mark.skipif(not CHROMIUM and not os.environ.get("CI"), reason="Debian's chromium is not installed")
def test_review_in_a_real_browser(waiting, tiny, capsys):
    from playwright.sync_api import sync_playwright

    server = subprocess.Popen([sys.executable, "-m", "gal", "review", str(waiting), "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        deadline = time.time() + 60
        while url is None and time.time() < deadline:
            line = server.stdout.readline()
            match = re.search(r"(http://127\.0\.0\.1:\d+/\?token=\S+)", line)
            url = match.group(1) if match else None
        assert url, "the review server printed no URL"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone-sized window
            page.goto(url)
            assert page.locator("figure").count() == 6 * 4
            page.click("figure[data-id='a2-j3']")
            page.click("figure[data-id='a5-j0']")
            assert page.locator("#count").inner_text() == "2"
            page.click("#submit")
            page.wait_for_selector("text=Submitted")
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
    assert reviews(waiting) == [(1, 2, 3, 1), (1, 5, 0, 1)]
    assert main(run_args(tiny, waiting, "--rounds", "3", "--strategy", "human", "--balance")) == 0
    summary = json.loads(_last_json(waiting, capsys))
    assert [a["path"] for a in summary["rounds"][0]["added"]] == [
        "rounds/1/samples/a002-j03.png", "rounds/1/samples/a005-j00.png"]
    assert len(summary["rounds"]) == 2  # the run went on to round 2's query and waits again


def test_report_has_every_section_and_is_self_contained(waiting, tiny, capsys):
    app = TestClient(create_app(waiting, "t"))
    assert app.post("/submit?token=t", json={"round": 1, "accepted": ["a0-j1"]}).status_code == 200
    assert main(run_args(tiny, waiting, "--rounds", "3", "--strategy", "human", "--balance")) == 0
    assert main(["eval", str(waiting), "--n", "1"]) == 0
    assert main(["report", str(waiting)]) == 0
    html = (waiting / "report.html").read_text()
    for needle in ('id="config"', 'id="references"', 'id="evaluation"', 'id="round-1"', 'id="round-2"',
                   "Training set", "Directions", "Added to the training set", "openness Δ",
                   "alt=\"beta and entropy per anchor\"", "alt=\"CLIP feature map\"",
                   "alt=\"TXT-ALN against IMG-ALN per round\"", "rounds/1/samples/a000-j01.png"):
        assert needle in html, needle
    assert html.count('class="anchor selected"') == 1
    assert not re.search(r'(src|href)="https?://', html)  # opens offline
    assert html.count("data:image/jpeg;base64") >= 6 * 4 + 3
