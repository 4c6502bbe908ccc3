"""`gal report RUN`: one self-contained HTML page of what a run did (thumbnails and plots inlined;
full-size images linked relative to the run folder)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape
from PIL import Image

from gal.config import strategy_label
from gal.keep import recommendation
from gal.ledger import Ledger
from gal.storage import write_text
from gal.view import ledger_summary

TEMPLATES = Environment(loader=PackageLoader("gal", "templates"), autoescape=select_autoescape())


MISSING = ("data:image/svg+xml;base64," + base64.b64encode(
    b'<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96"><rect width="96" height="96" fill="#ddd"/>'
    b'<text x="48" y="52" font-size="12" text-anchor="middle" fill="#a00">missing</text></svg>').decode())


def thumbnail(path: Path, size: int = 96) -> str:
    """A small inlined JPEG (data URI) of an image file; a grey "missing" tile where the file is gone or
    unreadable (the ledger still names it)."""
    try:
        return _thumbnail(path, size)
    except (OSError, ValueError, Image.DecompressionBombError):
        return MISSING


def _thumbnail(path: Path, size: int) -> str:
    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((size, size), Image.Resampling.NEAREST if max(im.size) <= size else Image.Resampling.LANCZOS)
        if max(im.size) < size:  # tiny images (the miniature world): enlarge without blur
            im = im.resize((size * im.width // max(im.size), size * im.height // max(im.size)), Image.Resampling.NEAREST)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def directions_chart(anchors: list[dict]) -> str:
    """β and Ω of each direction of a round; the chosen ones highlighted."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5, 0.42 * len(anchors)), 2.6))
    x = np.arange(len(anchors))
    chosen = [a["selected"] for a in anchors]
    ax.bar(x - 0.2, [a["beta"] for a in anchors], 0.4, label="β (overfit rate, Eq. 7)", color="#c4c4c4")
    ax.bar(x + 0.2, [a["entropy"] for a in anchors], 0.4, label="Ω (entropy, Eq. 6)",
           color=["#1a7f37" if c else "#4a78b5" for c in chosen])
    ax.set_xticks(x, [str(a["index"]) for a in anchors])
    ax.set_xlabel("anchor index (green: chosen)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, loc="upper right")
    return _png(fig)


def feature_map(features: np.ndarray, overfit: list[int], references: np.ndarray, chosen: list[bool]) -> str | None:
    """Figure 3 of the paper: the round's CLIP image features in 2-D (PCA), references marked."""
    if len(features) < 3:
        return None
    import matplotlib.pyplot as plt

    data = np.concatenate([features, references]).astype(np.float64) if references.size else features.astype(np.float64)
    centered = data - data.mean(axis=0)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    xy = centered @ vt[:2].T
    n = len(features)
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    colors = np.where(np.array(overfit) == 1, "#d1453b", "#4a78b5")
    ax.scatter(xy[:n, 0], xy[:n, 1], c=colors, s=[30 if c else 12 for c in chosen], alpha=0.75, linewidths=0)
    if references.size:
        ax.scatter(xy[n:, 0], xy[n:, 1], marker="*", s=180, c="#111", label="references")
    ax.scatter([], [], c="#d1453b", s=12, label="Φ = 1 (overfitted)")
    ax.scatter([], [], c="#4a78b5", s=12, label="Φ = 0")
    ax.legend(fontsize=7, loc="best")
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_title("CLIP image features (PCA)", fontsize=9)
    return _png(fig)


def alignment_plot(points: list[tuple[int, float, float]], label: str) -> str | None:
    """Figure 5 of the paper: TXT-ALN against IMG-ALN per round, an arrow from round to round."""
    if not points:
        return None
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    xs, ys = [p[2] for p in points], [p[1] for p in points]
    ax.plot(xs, ys, "-o", color="#1a7f37", label=label)
    for (r, y, x) in points:
        ax.annotate(f"R{r}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if len(points) > 1:
        ax.annotate("", xy=(xs[-1], ys[-1]), xytext=(xs[-2], ys[-2]),
                    arrowprops=dict(arrowstyle="->", color="#1a7f37", lw=1.5))
    ax.ticklabel_format(useOffset=False)
    ax.set_xlabel("IMG-ALN")
    ax.set_ylabel("TXT-ALN")
    ax.legend(fontsize=8)
    return _png(fig)


def write_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    ledger = Ledger(run_dir, read_only=True)  # a reader never writes the ledger
    try:
        summary = ledger_summary(ledger)
        ref_features = ledger.reference_features()
        rounds = []
        for r in summary["rounds"]:
            n = r["round"]
            samples, features = ledger.features(n)
            chosen_paths = {a["path"] for a in r["added"]}
            for a in r["added"]:  # a picked sample, or a composite (--added composite), which is none of them
                a["thumb"] = thumbnail(run_dir / a["path"])
            for a in r["anchors"]:
                for s in a["samples"]:
                    s["thumb"] = thumbnail(run_dir / s["path"])
                    s["added"] = s["path"] in chosen_paths
            selected = {a["index"] for a in r["anchors"] if a["selected"]}
            rounds.append({
                **r,
                "training_set": [{"path": t.path, "prompt": t.prompt, "weight": t.weight, "thumb": thumbnail(run_dir / t.path)}
                                 for t in ledger.training_set(n)],
                "chart": directions_chart(r["anchors"]) if r["anchors"] else None,
                "map": feature_map(features, [s.overfit for s in samples], ref_features,
                                   [s.anchor_idx in selected for s in samples]) if len(samples) else None,
                "evaluation": r["evaluations"][-1] if r["evaluations"] else None,
            })
        evaluated = [(r["round"], r["evaluation"]["txt_aln"], r["evaluation"]["img_aln"]) for r in rounds if r["evaluation"]]
        config = summary["config"]
        html = TEMPLATES.get_template("report.html").render(
            run=run_dir.name, summary=summary, config=config, rounds=rounds,
            references=[{**t, "thumb": thumbnail(run_dir / t["path"])} for t in summary["references"]],
            stop_reason=next((r["stop_reason"] for r in rounds if r["stopped"]), None),
            alignment=alignment_plot(evaluated, strategy_label(config['strategy'], config['balance'])),
            evaluated=[r for r in rounds if r["evaluation"]], recommended=recommendation(summary))
    finally:
        ledger.close()
    out = run_dir / "report.html"
    write_text(out, html)
    return out
