"""``facegallery evaluate``: the PubFig83 protocol (metrics.json, guesses.csv, figures) or LFW's
(metrics.json, roc.png) for one model."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click

from facegallery.cli import main
from facegallery.cli.options import chosen_detector, detector_options, model_option
from facegallery.errors import UserError

#: Data root (holding train/ and test/) when neither --data nor FACEGALLERY_DATA is given.
DEFAULT_DATA = Path("..") / "shared" / "data" / "pubfig83"
#: LFW's root (pairs.txt and lfw-deepfunneled/) when neither --data nor FACEGALLERY_LFW is given.
DEFAULT_LFW = Path("..") / "shared" / "data" / "lfw"


def _pct(x: float | None) -> str:
    return "   n/a" if x is None else f"{100 * x:5.1f}%"


def headline(m: dict) -> str:
    """The figures that matter, as a small table."""
    cs, cal, ni = m["closed_set"], m["calibration"], m["new_identities"]
    lines = [
        f"model {m['model']['name']} ({m['model']['fingerprint']})",
        f"closed set ({cs['probes']} known test photos)    top-1 {_pct(cs['top1'])}   top-6 {_pct(cs['top6'])}",
    ]
    for key in ("open_set", "open_set_all"):
        o = m[key]
        lines.append(
            f"open set {o['known_probes']} known + {o['unknown_probes']} unknown   "
            f"best {_pct(o['best_accuracy'])} at {o['best_threshold']:.3f} (hindsight)   "
            f"calibrated {_pct(o['calibrated_accuracy'])} at {o['calibrated_threshold']:.3f}   "
            f"gap {100 * o['gap']:.1f} pts"
        )
    lines.append(
        f"calibration: {cal['method']} ({cal['genuine_probes']} genuine, {cal['impostor_probes']} "
        "impostor probes; "
        + (
            f"validation accuracy {_pct(cal['validation_accuracy'])})"
            if cal["validation_accuracy"] is not None
            else f"threshold accepts {_pct(cal['accept_rate'])} of the genuine probes)"
        )
    )
    lines.append(f"new identities ({ni['identities']} people enrolled, no retraining), top-1 all / known / new:")
    for n in (1, 5, 10):
        k = f"top1_{n}shot"
        lines.append(f"  {n:2d}-shot  {_pct(ni[k])} / {_pct(ni[k + '_known'])} / {_pct(ni[k + '_new'])}")
    v = m["verification"]
    if v:
        lines.append(
            f"verification ({v['genuine_pairs']} genuine pairs)   ROC AUC {v['auc']:.4f}   "
            f"EER {_pct(v['eer'])}   TAR@FAR=0.1% {_pct(v['tar_at_far_0.001'])}"
        )
    return "\n".join(lines)


@main.command("evaluate")
@model_option
@click.option(
    "--protocol",
    type=click.Choice(["pubfig83", "lfw", "clusters"]),
    default="pubfig83",
    show_default=True,
    help="PubFig83's identification protocol, LFW's pair verification, or grouping the photos of a "
    "labelled tree (--data ROOT/<person>/<photos>) with every clustering algorithm.",
)
@click.option(
    "--data",
    type=click.Path(file_okay=False),
    help="PubFig83: root holding train/ and test/ [$FACEGALLERY_DATA or ../shared/data/pubfig83]; "
    "LFW: root holding pairs.txt and lfw-deepfunneled/ [$FACEGALLERY_LFW or ../shared/data/lfw].",
)
@click.option(
    "--pairs",
    type=click.Choice(["view2", "devtest"]),
    default="view2",
    show_default=True,
    help="LFW: pairs.txt's 10 folds, or the quick pairsDevTest.txt (threshold from pairsDevTrain.txt).",
)
@click.option("--train", type=click.Path(file_okay=False), help="Training tree; its people are the known ones.")
@click.option("--test", type=click.Path(file_okay=False), help="Test tree: known people plus people never trained on.")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for metrics.json, guesses.csv and the figures.",
)
@click.option("--plots", is_flag=True, help="Also draw the figures (t-SNE maps, k-means SSE, threshold sweep).")
@detector_options
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the calibration split when the checkpoint records none, and of the figures.",
)
def evaluate_cmd(model, protocol, data, pairs, train, test, out, plots, detector, min_face, seed) -> None:
    """Closed-set, open-set (swept and calibrated), new-identity and verification figures of a model
    on PubFig83, or its LFW verification figures."""
    t0 = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    detector = chosen_detector(detector, min_face)
    if protocol == "lfw":
        lfw = Path(data or os.environ.get("FACEGALLERY_LFW") or DEFAULT_LFW)
        return _evaluate_lfw(model, lfw, pairs, out, t0, detector)
    if protocol == "clusters":
        tree = Path(data or Path(os.environ.get("FACEGALLERY_DATA") or DEFAULT_DATA) / "test")
        return _evaluate_clusters(model, tree, out, t0, detector)
    from facegallery.embedder import load_model
    from facegallery.evaluation import evaluate, guesses, write_guesses

    root = Path(data or os.environ.get("FACEGALLERY_DATA") or DEFAULT_DATA)
    train, test = Path(train or root / "train"), Path(test or root / "test")
    embedder = load_model(model)
    metrics, embedded = evaluate(embedder, train, test, seed, progress=True)
    out.mkdir(parents=True, exist_ok=True)
    write_guesses(guesses(embedded, metrics["calibration"]["threshold"]), out / "guesses.csv")
    metrics["timing"]["total_s"] = round(time.perf_counter() - t0, 2)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    click.echo(headline(metrics))
    if plots:  # slow; the numbers are already on disk
        from facegallery.plots import write_all

        t1 = time.perf_counter()
        figures = write_all(embedded, metrics, out, seed)
        metrics["timing"]["plots_s"] = round(time.perf_counter() - t1, 2)
        metrics["timing"]["total_s"] = round(time.perf_counter() - t0, 2)
        metrics["figures"] = [p.name for p in figures]
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    click.echo(
        f"wrote {out / 'metrics.json'}, {out / 'guesses.csv'}"
        + (f" and {len(figures)} figures" if plots else "")
        + f" in {metrics['timing']['total_s']:.0f}s"
    )


def _evaluate_clusters(model: str | None, root: Path, out: Path, t0: float, detector=None) -> None:
    from facegallery.clustering import ALGORITHMS
    from facegallery.embedder import load_model
    from facegallery.grouping import evaluate_grouping

    metrics = evaluate_grouping(load_model(model), root, list(ALGORITHMS), progress=True, detector=detector)
    metrics["timing"] = {"total_s": round(time.perf_counter() - t0, 2)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    click.echo(
        f"model {metrics['model']['name']}: {metrics['photos']} photos of {root} "
        f"({metrics['photos_without_face']} without a face), cut {metrics['cut']}"
    )
    for name, f in metrics["algorithms"].items():
        click.echo(
            f"  {name:16s} BCubed P/R/F1 {f['bcubed_precision']:.3f}/{f['bcubed_recall']:.3f}/{f['bcubed_f1']:.3f}  "
            f"pairwise F1 {f['pairwise_f1']:.3f}  clusters {f['clusters']} for {f['people']} people, "
            f"{f['unassigned']} unassigned ({f['seconds']:.1f} s)"
        )
    click.echo(f"wrote {out / 'metrics.json'} in {metrics['timing']['total_s']:.0f}s")


def _evaluate_lfw(model: str | None, root: Path, pairs: str, out: Path, t0: float, detector=None) -> None:
    from facegallery.embedder import load_model
    from facegallery.lfw import evaluate_lfw
    from facegallery.lfw import headline as lfw_headline
    from facegallery.plots import plot_roc

    embedder = load_model(model)
    metrics, curves = evaluate_lfw(embedder, root, pairs, detector=detector)
    out.mkdir(parents=True, exist_ok=True)
    plot_roc(curves["distance"], curves["same"], out / "roc.png", f"LFW {metrics['pair_list']}: {embedder.name}")
    metrics["timing"]["total_s"] = round(time.perf_counter() - t0, 2)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    click.echo(lfw_headline(metrics))
    click.echo(f"wrote {out / 'metrics.json'} and {out / 'roc.png'} in {metrics['timing']['total_s']:.0f}s")
