"""Bad input: one line on stderr naming the flag or file, exit code 2, nothing written."""


import numpy as np
import pytest
from PIL import Image

from gal.cli import main
from gal.references import load_rgb, read_references

from conftest import run_args

pytestmark = pytest.mark.hostile


def replace(args, flag, value):
    args = list(args)
    args[args.index(flag) + 1] = value
    return args


def cases(tiny, tmp):
    empty = tmp / "empty"
    empty.mkdir()
    corrupt = tmp / "corrupt"
    corrupt.mkdir()
    (corrupt / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    no_brace, dup, blank = tmp / "no_brace.txt", tmp / "dup.txt", tmp / "blank.txt"
    no_brace.write_text("{} in a museum\na dog in a park\n")
    dup.write_text("{} in a museum\n{} on a boat\n{} in a museum\n")
    blank.write_text("\n\n")
    bad_yaml, unknown_key, bad_value = tmp / "bad.yaml", tmp / "unknown.yaml", tmp / "value.yaml"
    bad_yaml.write_text("m: [1, 2\nk: 3\n")
    unknown_key.write_text("m: 4\nlearning_rate: 0.1\n")
    bad_value.write_text("m: ten\n")
    busy = tmp / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    base = run_args(tiny, tmp / "out")
    def without(flag):
        return [a for i, a in enumerate(base) if a != flag and (i == 0 or base[i - 1] != flag)]
    return {
        "references missing": (replace(base, "--references", str(tmp / "nope")), "--references"),
        "references empty": (replace(base, "--references", str(empty)), "no images found"),
        "corrupt image": (replace(base, "--references", str(corrupt)), "a.png: not a readable image"),
        "anchor without {}": (replace(base, "--anchors", str(no_brace)), "line 2"),
        "duplicate anchor": (replace(base, "--anchors", str(dup)), "repeats line 1"),
        "empty anchors": (replace(base, "--anchors", str(blank)), "no anchor lines"),
        "anchors missing": (replace(base, "--anchors", str(tmp / "none.txt")), "--anchors"),
        "k larger than pool": (replace(base, "--k", "7"), "--k 7"),
        "m below 2": (replace(base, "--m", "1"), "entropy"),
        "negative lambda": (base + ["--lambda", "-0.1"], "--lambda"),
        "unknown strategy": (base + ["--strategy", "greedy"], "unknown strategy 'greedy'"),
        "resolution not a multiple of 8": (base + ["--resolution", "30"], "--resolution 30"),
        "out is a file": (replace(base, "--out", str(no_brace)), "is a file"),
        "unknown method": (base + ["--method", "dora"], "--method"),
        "base missing": (replace(base, "--base", str(tmp / "no-model")), "--base"),
        "scorer missing": (replace(base, "--scorer", str(tmp / "no-clip")), "--scorer"),
        "scorer not CLIP": (replace(base, "--scorer", str(tiny / "pipeline" / "unet")), "--scorer"),
        "base not a pipeline": (replace(base, "--base", str(tiny / "clip")), "--base"),
        "invalid YAML": (base + ["--config", str(bad_yaml)], "invalid YAML"),
        "unknown config key": (base + ["--config", str(unknown_key)], "valid keys"),
        "wrong value type": (["run", "--config", str(bad_value), "--out", str(tmp / "out")], "'m' is 'ten'"),
        "no non-SoI text": (without("--non-soi"), "--non-soi"),
        "no subject": (without("--subject"), "--subject"),
        "out is another folder": (replace(base, "--out", str(busy)), "holds no gal run"),
        "negative guidance": (base + ["--guidance", "-2"], "--guidance -2.0: expected 0 or more"),
        "subject with a newline": (replace(base, "--subject", "a <sks>\nball"), "--subject: a control character"),
        "non-SoI text with a tab": (replace(base, "--non-soi", "a ball\ton grass"), "--non-soi: a control character"),
    }


CASES = ["references missing", "references empty", "corrupt image", "anchor without {}", "duplicate anchor",
         "empty anchors", "anchors missing", "k larger than pool", "m below 2", "negative lambda", "unknown strategy",
         "resolution not a multiple of 8", "out is a file", "unknown method", "base missing", "scorer missing", "scorer not CLIP",
         "base not a pipeline", "invalid YAML", "unknown config key", "wrong value type", "no non-SoI text",
         "no subject", "out is another folder", "negative guidance", "subject with a newline",
         "non-SoI text with a tab"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gets_one_line_and_exit_2(case, tiny, tmp_path, capsys):
    argv, expected = cases(tiny, tmp_path)[case]
    busy_before = sorted(p.name for p in (tmp_path / "busy").iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("gal: error: ") and expected in err[0], err[0]
    assert not (tmp_path / "out").exists()  # nothing half-written
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == busy_before


def test_show_of_a_folder_without_run(tmp_path, capsys):
    assert main(["show", str(tmp_path)]) == 2
    assert "no gal run here" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "P", "RGBA", "LA", "L"])
def test_odd_image_modes_are_converted_to_rgb(mode, tmp_path):
    rgb = Image.new("RGB", (8, 8), (200, 40, 40))
    if mode == "I;16":
        image = Image.fromarray((np.full((8, 8), 30000)).astype(np.uint16))
    elif mode in ("RGBA", "LA"):
        image = rgb.convert(mode)
        image.putalpha(0)  # fully transparent: becomes white
    else:
        image = rgb.convert(mode)
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    image.save(path)
    out = load_rgb(path)
    assert out.mode == "RGB" and out.size == (8, 8)
    if mode in ("RGBA", "LA"):
        assert out.getpixel((0, 0)) == (255, 255, 255)
    if mode == "I;16":
        assert 110 < out.getpixel((0, 0))[0] < 125  # 30000 / 65535 of the 8-bit range


def test_non_images_are_ignored_with_a_note_and_captions_read(tmp_path, capsys):
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "cat.png")
    (tmp_path / "cat.txt").write_text("a cat on the stairs\n")
    (tmp_path / "notes.md").write_text("hello")
    (tmp_path / ".DS_Store").write_bytes(b"\0\0")
    refs = read_references(tmp_path)
    assert [r.source.name for r in refs] == ["cat.png"] and refs[0].caption == "a cat on the stairs"
    assert "ignored 1 file(s) that are not images Pillow reads" in capsys.readouterr().err
