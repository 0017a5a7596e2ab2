"""Figures of an evaluation, as PNG files: embeddings seen through t-SNE, k-means SSE over k, the
open-set threshold sweep, and LFW's ROC curve. Drawn with matplotlib's object API on the Agg canvas (no
pyplot, no display).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from sklearn.cluster import KMeans
from sklearn.manifold import TSNE
from sklearn.metrics import roc_curve

from facegallery.evaluation import EvalData, draw_unknowns
from facegallery.images import load_image
from facegallery.recognition import squared_distances

FILES = {
    "tsne_train": "tsne_train.png",
    "kmeans": "kmeans_sse.png",
    "tsne_test": "tsne_test_known.png",
    "tsne_open": "tsne_test_open.png",
    "sweep": "threshold_sweep.png",
}
#: Train photos per identity in the t-SNE (keeps it to ~30 s on PubFig83).
TSNE_PER_IDENTITY = 30
MARKERS = "os^D"


def identity_style(label: int) -> tuple[tuple, str]:
    """A colour and marker per identity: 60 distinct colours, then the marker changes."""
    palette = [c for m in ("tab20", "tab20b", "tab20c") for c in colormaps[m].colors]
    return palette[label % len(palette)], MARKERS[(label // len(palette)) % len(MARKERS)]


def tsne(x: np.ndarray, seed: int) -> np.ndarray:
    """2-D t-SNE (PCA init, fixed seed); perplexity shrinks for small inputs so it stays valid."""
    perplexity = float(min(30.0, max(1.0, (len(x) - 1) / 3)))
    return TSNE(2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed).fit_transform(
        np.asarray(x, dtype=np.float32)
    )


def subsample(labels: np.ndarray, per_label: int, seed: int) -> np.ndarray:
    """Row indices of at most ``per_label`` rows per label, reproducibly."""
    rng = np.random.default_rng(seed)
    return np.sort(
        np.concatenate([rng.permutation(np.flatnonzero(labels == l))[:per_label] for l in np.unique(labels)])
    )


def hard_triplet(emb: np.ndarray, labels: np.ndarray, seed: int) -> tuple[int, int, int]:
    """A batch-hard triplet: a random anchor, its farthest same-identity photo, its nearest
    other-identity photo (the kind the training miner learns from)."""
    rng = np.random.default_rng(seed)
    counts = np.bincount(labels)
    anchor = int(rng.choice(np.flatnonzero(counts[labels] >= 2)))
    d = squared_distances(emb[anchor : anchor + 1], emb)[0]
    same = labels == labels[anchor]
    positive = int(np.argmax(np.where(same, d, -np.inf)))
    negative = int(np.argmin(np.where(same, np.inf, d)))
    return anchor, positive, negative


def _scatter_identities(ax, xy: np.ndarray, labels: np.ndarray, size: float, alpha: float) -> None:
    for l in np.unique(labels):
        colour, marker = identity_style(int(l))
        m = labels == l
        ax.scatter(xy[m, 0], xy[m, 1], s=size, color=colour, marker=marker, alpha=alpha, linewidths=0)


def _tidy(ax, title: str) -> None:
    ax.set_title(title)
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_tsne_train(data: EvalData, path: Path, seed: int = 0) -> None:
    """Train embeddings (a subsample per identity) coloured by identity, with one batch-hard triplet
    marked on the map and shown as photos beside it."""
    folder = data.train.folder
    rows = subsample(folder.labels, TSNE_PER_IDENTITY, seed)
    emb, labels = data.train.emb[rows], folder.labels[rows]
    xy = tsne(emb, seed)
    trip = hard_triplet(emb, labels, seed)
    fig = Figure(figsize=(13, 9), layout="constrained")
    grid = fig.add_gridspec(3, 2, width_ratios=[4, 1])
    ax = fig.add_subplot(grid[:, 0])
    _scatter_identities(ax, xy, labels, 14, 0.7)
    a, p, n = (xy[i] for i in trip)
    d_ap, d_an = (float(squared_distances(emb[trip[0] : trip[0] + 1], emb[[i]])[0, 0]) for i in trip[1:])
    ax.plot(*zip(a, p), color="green", lw=2, label=f"anchor-positive, distance {d_ap:.2f}")
    ax.plot(*zip(a, n), color="red", lw=2, label=f"anchor-negative, distance {d_an:.2f}")
    for (x, y), letter in zip((a, p, n), "APN"):
        ax.scatter([x], [y], s=160, facecolor="white", edgecolor="black", linewidths=2, zorder=3)
        ax.annotate(letter, (x, y), ha="center", va="center", fontsize=9, weight="bold", zorder=4)
    ax.legend(loc="best", title="one batch-hard triplet")
    _tidy(
        ax,
        f"Train embeddings by t-SNE: {len(rows)} photos ({TSNE_PER_IDENTITY} or fewer per identity), "
        f"{len(folder.names)} identities, one colour each",
    )
    for r, (i, role) in enumerate(zip(trip, ("A  anchor", "P  positive", "N  negative"))):
        tax = fig.add_subplot(grid[r, 1])
        tax.imshow(load_image(folder.paths[rows[i]]))
        tax.set_title(f"{role}\n{folder.names[labels[i]]}", fontsize=10)
        tax.axis("off")
    fig.savefig(path, dpi=110)


def kmeans_sse(emb: np.ndarray, ks: list[int], seed: int) -> list[float]:
    """k-means SSE (inertia) for each k."""
    return [float(KMeans(k, n_init=1, random_state=seed).fit(emb).inertia_) for k in ks]


def plot_kmeans(data: EvalData, path: Path, seed: int = 0) -> None:
    """k-means SSE over k on the train embeddings, with the true number of identities marked: a good
    embedding makes the curve bend there."""
    emb = data.train.emb
    true_k = len(data.train.folder.names)
    ks = sorted({k for k in [*range(10, 121, 10), true_k] if k < len(emb)})
    sse = kmeans_sse(emb, ks, seed)
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(ks, sse, "o-", color="tab:blue", label="SSE (k-means inertia)")
    ax.axvline(true_k, color="tab:red", ls="--", label=f"true number of identities ({true_k})")
    ax.set_xlabel("number of clusters k")
    ax.set_ylabel("sum of squared distances to cluster centres")
    ax.set_title(f"k-means on {len(emb)} train embeddings")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=110)


def plot_tsne_test(data: EvalData, path: Path, seed: int = 0, with_unknown: bool = False) -> None:
    """Known test embeddings coloured by identity with the centroids (from train) as stars; with
    ``with_unknown`` also the original's draw of unknown photos, as grey crosses."""
    cents = data.centroids().vectors
    known = data.known
    unk = (
        data.unknown.emb[np.sort(draw_unknowns(data.unknown.folder.paths, len(known.emb)))]
        if with_unknown
        else np.zeros((0, cents.shape[1]), np.float32)
    )
    xy = tsne(np.concatenate([known.emb, unk, cents]), seed)
    k_xy, u_xy, c_xy = np.split(xy, [len(known.emb), len(known.emb) + len(unk)])
    fig = Figure(figsize=(12, 10), layout="constrained")
    ax = fig.add_subplot()
    if with_unknown:
        ax.scatter(
            u_xy[:, 0],
            u_xy[:, 1],
            s=14,
            marker="x",
            color="0.55",
            alpha=0.6,
            linewidths=0.8,
            label=f"unknown people ({len(unk)} photos of {len(data.unknown.folder.names)})",
        )
    _scatter_identities(ax, k_xy, known.folder.labels, 12, 0.75)
    ax.scatter([], [], s=12, color="tab:blue", label=f"known people ({len(known.emb)} photos), one colour each")
    names = data.train.folder.names
    for l, (x, y) in enumerate(c_xy):
        colour, _ = identity_style(l)
        ax.scatter(
            [x],
            [y],
            s=170,
            marker="*",
            color=colour,
            edgecolor="black",
            linewidths=0.8,
            zorder=3,
            label="centroids of the train photos" if l == 0 else None,
        )
        ax.annotate(names[l], (x, y), xytext=(4, 4), textcoords="offset points", fontsize=6, alpha=0.8)
    ax.legend(loc="best")
    what = "known and unknown" if with_unknown else "known"
    _tidy(ax, f"Test embeddings ({what} people) by t-SNE, with the {len(cents)} identity centroids")
    fig.savefig(path, dpi=110)


def plot_sweep(metrics: dict, path: Path) -> None:
    """Open-set accuracy against the unknown threshold (the balanced draw and all unknowns), with the
    hindsight best and the calibrated threshold marked."""
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.add_subplot()
    for key, colour in (("open_set", "tab:blue"), ("open_set_all", "tab:orange")):
        m = metrics[key]
        t, acc = np.array(m["sweep"]).T
        ax.plot(
            t,
            acc,
            drawstyle="steps-post",
            color=colour,
            label=f"{m['known_probes']} known + {m['unknown_probes']} unknown probes",
        )
        ax.axvline(
            m["best_threshold"],
            color=colour,
            ls="--",
            lw=1,
            label=f"  best (hindsight): {m['best_accuracy']:.3f} at {m['best_threshold']:.3f}",
        )
        ax.plot(
            [m["calibrated_threshold"]],
            [m["calibrated_accuracy"]],
            "o",
            color=colour,
            ms=8,
            markeredgecolor="black",
            label=f"  calibrated: {m['calibrated_accuracy']:.3f} at {m['calibrated_threshold']:.3f}",
        )
    ax.axvline(
        metrics["open_set"]["calibrated_threshold"],
        color="black",
        ls=":",
        lw=1,
        label="calibrated threshold (train data only)",
    )
    ax.set_xlabel("unknown threshold (squared distance to the nearest centroid)")
    ax.set_ylabel("open-set accuracy (known identities + 'unknown')")
    ax.set_title("Open-set accuracy against the threshold")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=9)
    fig.savefig(path, dpi=110)


def plot_roc(distance: np.ndarray, same: np.ndarray, path: Path, title: str) -> Path:
    """The ROC curve of verification pairs (same person when close), false-accept axis logarithmic."""
    fpr, tpr, _ = roc_curve(same, -distance)
    fig = Figure(figsize=(5, 4), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(np.maximum(fpr, 1e-4), tpr)
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 1)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.savefig(path)
    return path


def write_all(data: EvalData, metrics: dict, out: str | Path, seed: int = 0) -> list[Path]:
    """All five figures into ``out``; returns their paths."""
    out = Path(out)
    paths = {key: out / name for key, name in FILES.items()}
    plot_tsne_train(data, paths["tsne_train"], seed)
    plot_kmeans(data, paths["kmeans"], seed)
    plot_tsne_test(data, paths["tsne_test"], seed)
    plot_tsne_test(data, paths["tsne_open"], seed, with_unknown=True)
    plot_sweep(metrics, paths["sweep"])
    return list(paths.values())
