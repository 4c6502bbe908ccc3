"""Hostile, broken and tampered inputs: every case ends in one line and exit 2 (or a documented acceptance),
never in a traceback, and nothing is lost. (tests/test_bad_input.py holds the plain mistakes.)"""

import io
import sqlite3
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from gal.anchors import read_templates
from gal.cli import main
from gal.config import Config, make_config, valid_keys
from gal.errors import GalError
from gal.references import read_references
from gal.resolve import Machine, settle

from conftest import one_line_error, png_bytes, run_args

pytestmark = pytest.mark.hostile


def with_header_size(png: bytes, width: int, height: int) -> bytes:
    """The PNG with its IHDR chunk claiming another size (and a valid CRC): what a decompression bomb looks like."""
    ihdr = bytearray(png[12:29])  # type + 13 bytes of data
    ihdr[4:12] = struct.pack(">II", width, height)
    return png[:12] + bytes(ihdr) + struct.pack(">I", zlib.crc32(bytes(ihdr))) + png[33:]


# ---- reference files ---------------------------------------------------------------------------------

def _exif_rotated() -> bytes:
    image = Image.new("RGB", (40, 20), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to view
    buf = io.BytesIO()
    image.save(buf, format="JPEG", exif=exif)
    return buf.getvalue()


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (24, 24), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


REFERENCE_FILES = {  # name: (files, the error's words, or None where the folder is accepted)
    "random bytes": ({"a.png": bytes(range(256)) * 8}, "not a readable image"),
    "zero bytes": ({"a.jpg": b""}, "not a readable image"),
    "truncated PNG": ({"a.png": png_bytes((64, 64))[:60]}, "not a readable image"),
    "text named .png": ({"a.png": b"a cat on the stairs\n"}, "not a readable image"),
    "decompression bomb": ({"a.png": with_header_size(png_bytes(), 20000, 20000)}, "too many pixels"),
    "caption not UTF-8": ({"a.png": png_bytes(), "a.txt": "un chat\xe9".encode("latin-1")}, "as UTF-8 text"),
    "caption with a control character": ({"a.png": png_bytes(), "a.txt": b"a cat\x07 on the stairs"},
                                         "control characters"),
    "animated GIF": ({"a.gif": _animated_gif()}, None),
    "EXIF rotation": ({"a.jpg": _exif_rotated()}, None),
    "caption over three lines": ({"a.png": png_bytes(), "a.txt": b"a cat\non the\r\nstairs\n"}, None),
    "a folder named like an image": ({"sub.png/x.txt": b"", "a.png": png_bytes()}, None),
}


@pytest.mark.parametrize("case", REFERENCE_FILES)
def test_reference_files(case, tmp_path):
    files, expected = REFERENCE_FILES[case]
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    if expected is not None:
        with pytest.raises(GalError, match=expected) as e:
            read_references(tmp_path)
        assert "\n" not in str(e.value) and str(tmp_path) in str(e.value)
        return
    refs = read_references(tmp_path)  # the documented acceptances
    assert len(refs) == 1 and refs[0].image.mode == "RGB"
    if case == "animated GIF":
        assert refs[0].image.getpixel((0, 0)) == (255, 0, 0)  # the first frame
    if case == "EXIF rotation":
        assert refs[0].image.size == (20, 40)  # upright, as a viewer shows it
    if case == "caption over three lines":
        assert refs[0].caption == "a cat on the stairs"


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), (30, 90, 200)).save(buf, format="JPEG")
    return buf.getvalue()


def _damaged(valid: bytes):
    """A valid image with one byte changed and its tail cut at some point: what a bad copy or disk leaves."""
    return st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255), st.integers(1, len(valid))).map(
        lambda c: (valid[:c[0]] + bytes([c[1]]) + valid[c[0] + 1:])[:c[2]])


@given(data=st.one_of(st.binary(max_size=4096), _damaged(png_bytes((24, 24))), _damaged(_jpeg_bytes()),
                      _damaged(_animated_gif())),
       suffix=st.sampled_from([".png", ".jpg", ".gif", ".webp", ".tif", ".bmp"]))
def test_any_bytes_in_a_reference_image_are_read_or_refused_in_one_line(data, suffix):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / f"a{suffix}").write_bytes(data)
        try:
            refs = read_references(folder)
        except GalError as e:  # one line naming the file
            assert "\n" not in str(e) and f"a{suffix}" in str(e)
            return
        assert len(refs) == 1 and refs[0].image.mode == "RGB" and min(refs[0].image.size) >= 1


# ---- anchor files ------------------------------------------------------------------------------------

ANCHOR_FILES = {
    "binary": (bytes(range(256)), "cannot read it as UTF-8"),
    "empty lines only": (b"\n\n   \n\t\n", "no anchor lines"),
    "a line without {}": (b"{} in a museum\nin a garden\n", "line 2"),
    "two {} on a line": (b"{} and {} in a museum\n", "exactly one"),
    "a lone brace": (b"{} in a {museum\n", "exactly one"),
    "a repeated line": (b"{} in a museum\n\n{} in a museum\n", "repeats line 1"),
    "5000 lines, CRLF": (b"".join(b"{} in room %d\r\n" % i for i in range(5000)), None),
}


@pytest.mark.parametrize("case", ANCHOR_FILES)
def test_anchor_files(case, tmp_path):
    data, expected = ANCHOR_FILES[case]
    path = tmp_path / "anchors.txt"
    path.write_bytes(data)
    if expected is None:
        assert len(read_templates(path, "object")) == 5000
        return
    with pytest.raises(GalError, match=expected) as e:
        read_templates(path, "object")
    assert "\n" not in str(e.value) and str(path) in str(e.value)


# ---- config files and flag values --------------------------------------------------------------------

MACHINE = Machine(cpu_only=True, miniature=True)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=5), scalars, max_size=2))


@given(st.dictionaries(st.sampled_from(valid_keys()), values, max_size=8))
def test_any_config_mapping_is_accepted_or_refused_in_one_line(mapping):
    """Whatever a YAML file can hold for gal's keys: a Config, or one GalError line, nothing else."""
    try:
        settle(make_config(mapping, source="--config f.yaml"), MACHINE)
    except GalError as e:
        assert "\n" not in str(e)


CONFIG_FILES = {
    "a list, not a mapping": ("- m: 3\n", "found a list"),
    "infinite m": ("m: .inf\n", "'m' is inf"),
    "nan lr": ("lr: .nan\n", "--lr nan: expected a finite number"),
    "a mapping for the subject": ("subject: {a: 1}\n", "'subject' is"),
    "nested lists for non_soi": ("non_soi: [[a, b]]\n", "'non_soi' is"),
    "a billion laughs": ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                         "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                         "subject: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n", "unknown key"),
    "the laughs in a known key": ("seed: &a [x, x, x, x, x, x, x, x, x]\nsubject: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
                                  "references: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n", "expected"),
    "not UTF-8": (b"subject: \xff\xfe\n", "cannot read it"),
}


@pytest.mark.parametrize("case", CONFIG_FILES)
def test_config_files(case, tmp_path, capsys):
    text, expected = CONFIG_FILES[case]
    path = tmp_path / "run.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert main(["run", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    line = one_line_error(capsys)
    assert expected in line and len(line) < 1000  # bounded, whatever the file holds
    assert not (tmp_path / "out").exists()


FLAG_VALUES = {  # flag: (value, the error's words)
    "--lr": ("nan", "expected a finite number"),
    "--lambda": ("inf", "expected a finite number"),
    "--guidance": ("nan", "expected a finite number"),
    "--prior-loss-weight": ("-inf", "expected a finite number"),
    "--subject": ("a <sks>\x1b[31m cat", "a control character"),
    "--subject-plain": ("a\x00cat", "a control character"),
    "--rounds": ("-3", "expected at least 1"),
    "--train-steps": ("0", "expected at least 1"),
    "--resolution": ("-512", "expected at least 8"),
    "--k": ("-1", "expected at least 1"),
}


@pytest.mark.parametrize("flag", FLAG_VALUES)
def test_flag_values(flag, tiny, tmp_path, capsys):
    value, expected = FLAG_VALUES[flag]
    args = run_args(tiny, tmp_path / "out")
    args = args[:args.index(flag)] + args[args.index(flag) + 2:] if flag in args else args
    assert main(args + [f"{flag}={value}"]) == 2
    assert expected in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_absurd_but_valid_numbers_are_accepted_and_sizes_have_a_ceiling():
    cfg = settle(Config(references="r", subject="a <sks> cat", m=10**4, rounds=1000, lr=1e-30), MACHINE).config
    assert cfg.m == 10**4
    for field, value in (("m", 10**6), ("resolution", 100_000), ("batch_size", 10**5), ("gen_batch_size", "99999"),
                         ("num_class_images", 10**7), ("seed", -1), ("seed", 2**64)):
        with pytest.raises(GalError, match="expected"):
            settle(Config(references="r", subject="a <sks> cat", **{field: value}), MACHINE)


# ---- a damaged or tampered run folder ----------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncated", "random bytes", "zero bytes"])
@pytest.mark.parametrize("command", ["show", "report", "eval", "run"])
def test_a_damaged_ledger_is_diagnosed(damage, command, finished_run, tiny, tmp_path, capsys):
    run = finished_run.copy(tmp_path / "run").folder
    ledger = run / "gal.sqlite"
    data = ledger.read_bytes()
    ledger.write_bytes({"truncated": data[:len(data) // 2], "random bytes": bytes(range(256)) * 64,
                        "zero bytes": b""}[damage])
    before = sorted((p.relative_to(run), p.stat().st_size) for p in run.rglob("*") if p.is_file())
    argv = run_args(tiny, run, "--rounds", "2", "--strategy", "random") if command == "run" else [command, str(run)]
    assert main(argv) == 2
    line = one_line_error(capsys)  # an empty file reads as an empty database: no record of the run, said so
    assert "gal.sqlite: the run's ledger is damaged" in line and "checkpoints of round(s) 1, 2" in line
    after = sorted((p.relative_to(run), p.stat().st_size) for p in run.rglob("*") if p.is_file())
    assert [p for p, _ in after if p.name != "gal.sqlite"] == [p for p, _ in before if p.name != "gal.sqlite"]


def test_a_ledger_from_a_newer_gal_is_refused(finished_run, tmp_path, capsys):
    run = finished_run.copy(tmp_path / "run").folder
    with sqlite3.connect(run / "gal.sqlite") as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    assert main(["show", str(run)]) == 2
    assert "written by a newer gal (ledger schema 99" in one_line_error(capsys)


def test_a_missing_sample_is_a_placeholder_in_the_report(finished_run, tmp_path, capsys):
    run = finished_run.copy(tmp_path / "run").folder
    gone = sorted(run.glob("rounds/1/samples/**/*.png"))[:3]
    assert gone
    for p in gone:
        p.unlink()
    assert main(["report", str(run)]) == 0
    from gal.report import MISSING

    assert MISSING in (run / "report.html").read_text()  # a grey "missing" tile where each image was
    assert main(["show", str(run)]) == 0


def test_foreign_files_in_a_run_folder_are_left_alone(finished_run, tiny, tmp_path, capsys):
    run = finished_run.copy(tmp_path / "run").folder
    (run / "notes.txt").write_text("my notes")
    (run / "rounds" / "1" / "stray.png").write_bytes(png_bytes())
    (run / "extra").mkdir()
    assert main(run_args(tiny, run, "--rounds", "2", "--strategy", "random")) == 0  # finished: read back
    assert main(["show", str(run)]) == 0 and main(["report", str(run)]) == 0
    assert (run / "notes.txt").read_text() == "my notes" and (run / "extra").is_dir()


def test_missing_samples_of_an_open_round_are_made_again_the_same(waiting_run, tmp_path, capsys):
    run, args = waiting_run.copy(tmp_path / "run")
    gone = sorted(run.glob("rounds/2/samples/*.png"))[:3]
    before = {p: p.read_bytes() for p in gone}
    for p in gone:
        p.unlink()
    capsys.readouterr()
    assert main(args) == 0
    assert "3 sample(s) of round 2 missing; making them again" in capsys.readouterr().err
    assert all(p.read_bytes() == data for p, data in before.items())


def test_a_missing_checkpoint_is_trained_again_the_same(waiting_run, tmp_path, capsys):
    import shutil

    run, args = waiting_run.copy(tmp_path / "run")
    weights = run / "rounds" / "2" / "checkpoint" / "pytorch_lora_weights.safetensors"
    before = weights.read_bytes()
    shutil.rmtree(weights.parent)
    capsys.readouterr()
    assert main(args) == 0
    assert "checkpoint: missing; training round 2 again" in capsys.readouterr().err
    assert weights.read_bytes() == before


@pytest.mark.parametrize("which", ["reference", "added image"])
def test_a_missing_training_image_is_named(which, waiting_run, tmp_path, capsys):
    from gal.ledger import Ledger

    run, args = waiting_run.copy(tmp_path / "run")
    ledger = Ledger(run)
    path = ledger.added(0 if which == "reference" else 1)[0].path
    ledger.close()
    (run / path).unlink()
    capsys.readouterr()
    assert main(args) == 2
    line = one_line_error(capsys)
    assert f"{path}: missing; it is" in line and ("round 1" in line) == (which == "added image")


# ---- the review server's requests ---------------------------------------------------------------------

REVIEW_BODIES = {  # name: (body, content type, status)
    "random bytes": (bytes(range(256)), "application/json", 400),
    "a JSON list": (b"[1, 2, 3]", "application/json", 400),
    "round as text": (b'{"round": "two", "accepted": []}', "application/json", 400),
    "round infinite": (b'{"round": Infinity, "accepted": []}', "application/json", 400),
    "round NaN": (b'{"round": NaN, "accepted": []}', "application/json", 400),
    "a round not waiting": (b'{"round": 99, "accepted": []}', "application/json", 409),
    "ids that are numbers": (b'{"round": 2, "accepted": [1, 2]}', "application/json", 400),
    "ids of no sample": (b'{"round": 2, "accepted": ["a0-j99"]}', "application/json", 400),
    "a form, not JSON": (b"round=2&accepted=a0-j0", "application/x-www-form-urlencoded", 400),
    "a 2 MB body": (b'{"round": 2, "accepted": ["' + b"x" * (2 << 20) + b'"]}', "application/json", 413),
}


@pytest.fixture
def review_client(waiting_run, tmp_path):
    from starlette.testclient import TestClient

    from gal.review import create_app

    run = waiting_run.copy(tmp_path / "run").folder
    return run, TestClient(create_app(run, "t0k3n"))  # a server error would raise here, not pass as a status


@pytest.mark.parametrize("case", REVIEW_BODIES)
def test_review_request_bodies(case, review_client):
    run, client = review_client
    body, content_type, status = REVIEW_BODIES[case]
    def reviews():
        return sqlite3.connect(run / "gal.sqlite").execute("SELECT * FROM review").fetchall()

    before = reviews()
    response = client.post("/submit?token=t0k3n", content=body, headers={"content-type": content_type})
    assert response.status_code == status and "error" in response.json()
    assert reviews() == before  # nothing written


def test_review_requests_without_the_token_are_refused(review_client):
    _, client = review_client
    assert client.post("/submit", content=b'{"round": 2, "accepted": []}').status_code == 403
    assert client.get("/file/rounds/2/samples/a000-j00.png?token=wrong").status_code == 403


@pytest.mark.parametrize("address", ["a port in use", "port 70000", "an address not of this machine"])
def test_review_addresses(address, waiting_run, capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        host, port = {"a port in use": ("127.0.0.1", busy.getsockname()[1]), "port 70000": ("127.0.0.1", 70000),
                      "an address not of this machine": ("203.0.113.7", 0)}[address]
        assert main(["review", str(waiting_run.folder), "--host", host, "--port", str(port)]) == 2
    assert f"--port {port}" in one_line_error(capsys)


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                                     st.text(max_size=8)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.sampled_from(["round", "accepted", "overfit", "x"]),
                                                                   inner, max_size=3)), max_leaves=8)


@pytest.fixture(scope="module")
def fuzzed_client(waiting_run, tmp_path_factory):
    from starlette.testclient import TestClient

    from gal.review import create_app

    return TestClient(create_app(waiting_run.copy(tmp_path_factory.mktemp("fuzz") / "run").folder, "t0k3n"))


@given(body=json_values)
def test_any_json_body_gets_an_answer_not_a_server_error(body, fuzzed_client):
    import json

    response = fuzzed_client.post("/submit?token=t0k3n", content=json.dumps(body).encode())
    assert response.status_code in (200, 400, 409)


def test_readers_work_and_writers_refuse_while_a_run_holds_the_folder(finished_run, tmp_path, capsys):
    import os

    from gal.storage import RunLock

    run = finished_run.copy(tmp_path / "run").folder
    with RunLock(run):  # as a running `gal run` holds it
        assert main(["show", str(run)]) == 0 and main(["report", str(run)]) == 0
        capsys.readouterr()
        assert main(["eval", str(run), "--n", "1"]) == 2
        line = one_line_error(capsys)
        assert f"(pid {os.getpid()})" in line and "gal show and gal report work meanwhile" in line
