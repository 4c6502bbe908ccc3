"""The `gal` command: parsing and printing only; the work is in `gal.loop` and the ledger."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from gal.config import N_EVAL, Config, integer, key_of, load_yaml, make_config, number
from gal.errors import GalError


class Parser(argparse.ArgumentParser):
    """argparse, with its errors in gal's one line (argparse prints the usage, then the error)."""

    def error(self, message: str):
        print(f"gal: error: {self.prog}: {message} (`{self.prog} --help` lists the flags)", file=sys.stderr)
        raise SystemExit(2)


def _run_parser(sub) -> None:
    p = sub.add_parser("run", help="personalize a model with generative active learning (Algorithm 1)",
                       description="Fine-tune, query the anchor directions, pick the uncertain ones, repeat. "
                                   "Running the same command again resumes an unfinished run.")
    p.add_argument("--config", help="YAML file with the same keys as the flags (`_` for `-`)")
    add_config_flags(p)
    p.add_argument("--force", action="store_true", help="resume a run even though its config changed")


def add_config_flags(p, only: tuple[str, ...] | None = None) -> None:
    """One flag per `Config` field (or per field in `only`), from the field's type, default and metadata
    (`config.setting`)."""
    S = argparse.SUPPRESS  # only flags given on the command line override the --config file
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(Config):
        if only is not None and f.name not in only:
            continue
        meta, key = f.metadata, key_of(f.name)
        group = groups.get(meta["group"]) or groups.setdefault(meta["group"], p.add_argument_group(meta["group"]))
        flag, extra = "--" + key.replace("_", "-"), dict(meta["flag"])
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = meta["default_text"] if meta["default_text"] is not None else ("on" if default else "off") \
            if isinstance(default, bool) else "" if isinstance(default, list) else default
        help_ = meta["help"] + (f" (default: {shown})" if shown != "" else "")
        kind = f.type.replace(" | None", "")
        kwargs = dict(dest=key, default=S, help=help_, metavar=meta["metavar"], choices=meta["choices"])
        negative = extra.pop("negative", None)
        if kind == "bool":
            kwargs.update(action=argparse.BooleanOptionalAction, metavar=None)
        elif kind == "list[str]":
            kwargs.update(action="append")
        else:
            kwargs.update(type={"int": integer, "float": number}.get(kind, str), **extra)
        if meta["choices"]:
            kwargs["metavar"] = None
        group.add_argument(flag, **kwargs)
        if negative:
            group.add_argument(f"--no-{key}", dest=key, default=S, action="store_const", const=negative,
                               help=f"same as {flag} {negative}")


def _show_parser(sub) -> None:
    p = sub.add_parser("show", help="print a run's rounds, directions and selections")
    p.add_argument("run", metavar="RUN", help="run folder")
    p.add_argument("--json", action="store_true",
                   help="one JSON object, for scripts (file paths in it are relative to the run folder)")


def _eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="TXT-ALN, IMG-ALN and OVF on test prompts, per round of a run or per checkpoint of "
                                    "any trainer's LoRA",
                       description="gal eval RUN: every round's checkpoint (stored in the run, computed once). "
                                   "gal eval --base MODEL --lora PATH [--lora PATH ...] [--lora-scale X ...] "
                                   "--references DIR --subject ... --non-soi ...: each checkpoint of any trainer at each "
                                   "scale, where it copies (per-anchor overfit rate) and the one to keep.")
    p.add_argument("run", nargs="?", metavar="RUN", help="run folder")
    p.add_argument("--round", type=integer, action="append", help="only this round (repeatable)")
    p.add_argument("--n", type=integer, default=N_EVAL, help=f"images per test prompt (default: {N_EVAL})")
    p.add_argument("--seed", type=integer, default=0)
    p.add_argument("--prompts", metavar="FILE", help="test prompts, one per line, {} for the subject (default: the paper's)")
    p.add_argument("--image-model", metavar="DIR", help="a second image model (e.g. DINO) for another IMG-ALN column")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    p.add_argument("--lora", metavar="PATH", action="append",
                   help="with --base: a LoRA file, a folder with one, a folder of a trainer's checkpoints (kohya's "
                        "name-000010.safetensors, ai-toolkit's name_000001000.safetensors, checkpoint-N/ folders) or a "
                        "gal run (repeatable); read with the base's pipe.load_lora_weights")
    p.add_argument("--lora-scale", type=number, nargs="+", action="extend", metavar="X",
                   help="the LoRA's strength, as a user of the file can turn it down; several (or repeated): each "
                        "(default: 1)")
    p.add_argument("--masked", action="store_true", help="with --lora: IMG-ALN on the subject's region too (CLIPSeg "
                                                         "prompted with the class word; NAME.mask.png or an alpha "
                                                         "channel gives a reference's own)")
    p.add_argument("--segmenter", metavar="DIR", help="with --masked: a CLIPSeg folder or hub id (default: "
                                                      "CIDAS/clipseg-rd64-refined)")
    p.add_argument("--report", metavar="FILE", help="with --lora: also write a self-contained HTML page here")
    add_config_flags(p, only=MODEL_EVAL_FIELDS)  # one model, without a run: the `gal run` flags that describe it


MODEL_EVAL_FIELDS = ("base", "scorer", "references", "kind", "subject", "subject_plain", "non_soi", "anchors", "m",
                     "steps", "guidance", "resolution")


def _review_parser(sub) -> None:
    p = sub.add_parser("review", help="serve the pending round of a --strategy human run for a person to pick images")
    p.add_argument("run", metavar="RUN", help="run folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=integer, default=8765, help="(default: 8765; 0: any free port)")


def _miniature_parser(sub) -> None:
    p = sub.add_parser("miniature", help="the miniature world: `train OUT` rebuilds its model and scorer, "
                                         "`check MODEL SCORER` measures them", add_help=False)
    p.add_argument("action", choices=["train", "check"])
    p.add_argument("rest", nargs=argparse.REMAINDER)


def _bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="the paper's comparison on the miniature world (Table 1, Figure 5); "
                                     "--suite paper-object|paper-style: the real protocol")
    p.add_argument("--suite", choices=["paper-object", "paper-style"], help="the paper's protocol on Stable Diffusion")
    p.add_argument("--quick", action="store_true",
                   help="miniature bench, a smoke test of its machinery in minutes: Table 1's rows and the controls "
                        "(other rows when --rows names them) on one style, 1 seed, 2 rounds, m 2, 100-step fine-tunes")
    p.add_argument("--only", metavar="SUBJECT", action="append",
                   help="miniature bench: run these subjects only (repeatable), e.g. to split a bench across processes")
    p.add_argument("--seed", type=integer, action="append", help="miniature bench: run these seeds only (repeatable)")
    p.add_argument("--rows", action="append", metavar="KEYS",
                   help="miniature bench: run these rows only, by key, comma-separated: the controls fewer-steps, "
                        "lora-scale, exposure; Table 1's random, human, uncertainty, balance, oracle; or the bench's "
                        "own (an unknown key lists every key). Default: every row (--quick: the controls and Table 1's)")
    p.add_argument("--results", metavar="FILE", help="miniature bench: write the table and plot here (e.g. docs/results.md)")
    p.add_argument("--summary", metavar="FILE", help="miniature bench: also write this invocation's summary (JSON) here")
    p.add_argument("--merge", metavar="FILE", action="append",
                   help="miniature bench: add the runs of another bench.json that this one lacks (subject, seed, row) to --results")
    p.add_argument("--dry-run", action="store_true", help="print the plan and check --data; run nothing")
    p.add_argument("--data", metavar="DIR", help="your copy of the suite's images: DIR/<concept>/")
    p.add_argument("--out", default="gal-bench", metavar="DIR")


def _demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="GAL on the bundled miniature world for a held-out style, evaluated and reported")
    p.add_argument("--out", default="gal-demo", metavar="DIR", help="run folder (default: gal-demo)")
    p.add_argument("--subject", default="mosaic", help="held-out subject: mosaic, neon, twotone_star, spotted_ring")


def _report_parser(sub) -> None:
    p = sub.add_parser("report", help="write RUN/report.html: what each round generated, chose and weighed")
    p.add_argument("run", metavar="RUN", help="run folder")


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="gal", description="Generative active learning for text-to-image personalization.")
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    _show_parser(sub)
    _eval_parser(sub)
    _review_parser(sub)
    _report_parser(sub)
    _miniature_parser(sub)
    _demo_parser(sub)
    _bench_parser(sub)
    try:
        args = vars(parser.parse_args(argv))
    except SystemExit as e:  # --help (0), or a flag argparse refused (2, one line: Parser.error)
        return int(e.code or 0)
    command = args.pop("command")
    try:
        if command == "run":
            return _run(args)
        if command == "eval":
            return _eval(args)
        if command == "bench":
            return _bench(args)
        if command == "demo":
            from gal.demo import main as demo

            return demo(Path(args["out"]), args["subject"])
        if command == "miniature":
            return _miniature(args["action"], args["rest"])
        if command == "review":
            return _review(Path(args["run"]), args["host"], args["port"])
        if command == "report":
            from gal.report import write_report

            print(f"wrote {write_report(_existing_run(Path(args['run'])))}")
            return 0
        return _show(Path(args["run"]), as_json=args["json"])
    except GalError as e:
        print(f"gal: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gal: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def _run(args: dict) -> int:
    from gal.loop import run  # the model stack loads only for commands that need it

    config_file = args.pop("config", None)
    force = args.pop("force")
    values = load_yaml(config_file) if config_file else {}
    values.update(args)
    summary = run(make_config(values, source=f"--config {config_file}" if config_file else "flags"), force=force)
    print(f"status: {summary['status']}; result: {summary['result']}")
    out = values.get("out", "gal-run")
    if summary["status"] == "finished":
        print(f"next: gal eval {out}   (TXT-ALN, IMG-ALN, OVF per round), gal report {out}")
    return 0


def _bench(a: dict) -> int:
    from gal.storage import check_output

    reads = {"--data": [a["data"]], "--merge": a["merge"] or []}
    check_output("--out", Path(a["out"]), reads, folder=True)
    for flag in ("results", "summary"):
        if a[flag]:
            check_output(f"--{flag}", Path(a[flag]), reads)
    if a["suite"] is None:
        import shlex

        from gal.miniature import bench

        rows = [r for x in a["rows"] for r in x.split(",") if r] if a["rows"] else None
        bench.main(Path(a["out"]), quick=a["quick"], only=a["only"], seeds=a["seed"], rows=rows, results=a["results"],
                   summary=a["summary"], merge=a["merge"], command="gal " + shlex.join(sys.argv[1:]))
        return 0
    from gal import suite

    data = Path(a["data"]) if a["data"] else None
    if a["dry_run"]:
        return suite.dry_run(a["suite"], data, Path(a["out"]))
    suite.run_suite(a["suite"], data, Path(a["out"]))
    return 0


def _miniature(action: str, argv: list[str]) -> int:
    if action == "check":
        from gal.miniature.check import main as check

        check(argv)
        return 0
    from gal.miniature.train import main as train

    try:
        train(argv)
    except SystemExit as e:  # 3: interrupted, resumable
        return int(e.code or 0)
    except FileExistsError as e:
        raise GalError(f"gal miniature train: {e}") from None
    return 0


def _existing_run(run_dir: Path) -> Path:
    from gal.ledger import Ledger

    if not Ledger.exists(run_dir):
        raise GalError(f"{run_dir}: no gal run here (no {Ledger.FILE}); expected a folder made by `gal run --out`")
    return run_dir


def _review(run_dir: Path, host: str, port: int) -> int:
    from gal.ledger import Ledger
    from gal.review import pending_round, serve

    ledger = Ledger(_existing_run(run_dir))
    strategy, pending = (ledger.get("config") or {}).get("strategy"), pending_round(ledger)
    ledger.close()
    if strategy != "human":
        raise GalError(f"{run_dir}: this run uses --strategy {strategy}; only --strategy human runs wait for a review")
    if pending is None:
        print(f"{run_dir}: no round is waiting for review (run `gal run` to make the next one); serving the page anyway")
    serve(run_dir, host, port)
    return 0


def _show(run_dir: Path, as_json: bool) -> int:
    from gal.view import run_summary, run_text

    summary = run_summary(_existing_run(run_dir))
    print(json.dumps(summary, indent=1) if as_json else run_text(run_dir, summary))
    return 0


def _eval(a: dict) -> int:
    import gal
    from gal.metrics import rows_text

    if not 1 <= a["n"] <= 1000:
        raise GalError(f"--n {a['n']}: expected 1 to 1000 images per test prompt")
    if not 0 <= a["seed"] < 2**63:
        raise GalError(f"--seed {a['seed']}: expected 0 or more")
    scales = a["lora_scale"] or [1.0]
    if a["run"]:
        if a["lora"]:
            raise GalError(f"--lora {a['lora'][0]}: gal eval RUN evaluates the run's own rounds; expected either RUN "
                           "or --base MODEL --lora PATH ...")
        from gal.metrics import evaluate_splits
        from gal.view import run_summary

        out = []
        for scale in scales:  # the test prompts, and the validation split `gal show` chooses the round on
            found = evaluate_splits(Path(a["run"]), rounds=a["round"], splits=("test", "validation"), n=a["n"],
                                    seed=a["seed"], prompts_file=a["prompts"], image_model=a["image_model"],
                                    lora_scale=scale, device=a["device"])
            out.append({"lora_scale": scale, "rounds": found["test"], "validation": found["validation"]})
        recommended = run_summary(Path(a["run"]))["recommended"]
        if a["json"]:
            body = out[0] if len(out) == 1 else {"scales": out}
            print(json.dumps({**body, "recommended": recommended}, indent=1))
            return 0
        for part in out:
            if len(out) > 1:
                print(f"LoRA scale {part['lora_scale']:g}:")
            print(rows_text(part["rounds"]))
            if part["validation"]:
                print("validation split (the anchors no round added an image for):")
                print(rows_text(part["validation"]))
        if recommended:
            print(f"keep: round {recommended['round']} ({recommended['checkpoint']}): {recommended['why']}")
        return 0
    if not a.get("base"):
        raise GalError("gal eval: expected a run folder (gal eval RUN) or a model (gal eval --base MODEL ...)")
    cfg = make_config({k: a[k] for k in MODEL_EVAL_FIELDS if k in a}, source="flags")
    if a["report"]:
        from gal.compare import check_report

        inputs = ("references", "base", "scorer", "anchors", "prompts", "segmenter", "image_model")
        check_report(Path(a["report"]), {"--lora": a["lora"] or [],
                                         **{"--" + k.replace("_", "-"): [a.get(k)] for k in inputs}})
    import tempfile

    with tempfile.TemporaryDirectory() as images:
        result = gal.evaluate_checkpoints(cfg, a["lora"] or [], scales, n=a["n"], seed=a["seed"],
                                          prompts_file=a["prompts"], masked=a["masked"], segmenter=a["segmenter"],
                                          image_model=a["image_model"], device=a["device"],
                                          save_dir=Path(images) if a["report"] else None,
                                          log=lambda line: print(line, file=sys.stderr))
        if a["report"]:
            from gal.compare import write_report

            write_report(result, Path(a["report"]), cfg.base or "-", a["n"], cfg.m)
    if a["json"]:
        print(json.dumps({**result, "rounds": [{"round": None, **r} for r in result["rows"]]}, indent=1))
        return 0
    print(checkpoints_text(result))
    return 0


def checkpoints_text(result: dict) -> str:
    """`gal eval --base ... --lora ...`'s table: a line per (checkpoint, scale), and the one to keep."""
    from gal.compare import copying_line

    rows = result["rows"]
    masked = bool(rows and "img_aln_masked" in rows[0])
    lines = [f"{'checkpoint':<28} {'scale':>5}  {'TXT-ALN':>7}  {'IMG-ALN':>7}" + ("  IMG-ALN(subject)" if masked else "")
             + f"  {'OVF':>6}  copies"]
    for r in rows:
        lines.append(f"{(r['checkpoint'] or 'base')[:28]:<28} {r['scale']:>5g}  {r['txt_aln']:7.4f}  {r['img_aln']:7.4f}"
                     + (f"  {r['img_aln_masked']:16.4f}" if masked else "") + f"  {r['ovf']:6.3f}  "
                     + (f"{r['copies']} of {len(r['beta'])}" + _worst(result, r) if "copies" in r else "-"))
    rec = result["recommended"]
    if rec:
        row = next(r for r in rows if r["label"] == rec["label"])
        lines.append(f"keep: {rec['label']} ({rec['lora']}, scale {rec['scale']:g}): {rec['why']}; it "
                     f"{copying_line(result, row)}")
    return "\n".join(lines)


def _worst(result: dict, row: dict) -> str:
    """The direction with the highest β (Eq. 7), where it copies most."""
    if not row["beta"] or max(row["beta"]) == 0:
        return ""
    i = max(range(len(row["beta"])), key=lambda i: row["beta"][i])
    return f" (worst: {result['anchors'][i]}, β {row['beta'][i]:.2f})"


def entry() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for stream in (sys.stdout, sys.stderr):  # a file name the file system could not decode still prints
        stream.reconfigure(errors="backslashreplace")
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `gal show --json | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    entry()
