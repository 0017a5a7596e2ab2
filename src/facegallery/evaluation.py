"""The evaluation protocol, on embeddings, as plain dicts of numbers (no files, no SQLite, no CLI).

Known identities are those of the training tree; each one's centroid is the mean of ALL its training
embeddings (as the original project did). On the test tree:

- closed set: top-1 / top-6 of the known identities' test photos by nearest centroid;
- open set: known test photos plus photos of people never trained on; a probe is "unknown" when its
  nearest centroid is farther than a threshold. Accuracy is swept exactly over every threshold (its
  best is hindsight, chosen on test), and reported at a threshold calibrated on the training tree only;
  ``open_set`` uses the original's balanced draw of unknown photos, ``open_set_all`` every one;
- new identities (FaceNet's point): the unseen people enrolled from their lowest-numbered 1/5/10
  photos, without retraining, then everyone identified among all centroids;
- verification: genuine vs impostor pairs of known test photos (ROC AUC, EER, TAR at low FAR).
"""

from __future__ import annotations

import csv
import datetime
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from facegallery.calibration import ACCEPT_RATE, calibrate
from facegallery.datasets import FaceFolder, Split, discover, make_split, numbered_key
from facegallery.embedder import Embedder
from facegallery.errors import UserError
from facegallery.facecache import FaceCache
from facegallery.library import embed_paths
from facegallery.pipeline import Finder
from facegallery.recognition import Centroids, accuracy_at, best_threshold, squared_distances, threshold_sweep

#: Bumped whenever the protocol's figures for the same embeddings would change (2: distances to centroids
#: of few photos scaled by recognition.count_factor), so saved metrics of an older protocol are not reused.
PROTOCOL = 2
#: The original protocol's draw of unknown photos is made with this seed, whatever ``--seed`` says.
DRAW_SEED = 0
SHOTS = (1, 5, 10)
TOP_K = 6
SWEEP_POINTS = 500
#: Verification pairs grow quadratically; above this many photos a fixed sample is used.
VERIFICATION_MAX_PHOTOS = 3000


@dataclass
class Embedded:
    """The readable photos of a tree and their embeddings (row i shows ``folder.paths[i]``)."""

    folder: FaceFolder
    emb: np.ndarray

    def subset(self, index: np.ndarray | list[int], names: list[str] | None = None) -> Embedded:
        """The photos at ``index`` (labels re-indexed onto ``names`` when given)."""
        index = np.asarray(index, dtype=np.int64)
        return Embedded(self.folder.subset(index, names), self.emb[index])


@dataclass
class EvalData:
    """Everything the protocol needs: train embeddings (whose names are the known identities) and the
    test embeddings split into known photos (labelled by train index) and unknown photos (labelled
    over their own names)."""

    train: Embedded
    known: Embedded
    unknown: Embedded

    def centroids(self) -> Centroids:
        """One centroid per known identity from all its train photos."""
        return Centroids.of(self.train.emb, self.train.folder.labels, len(self.train.folder.names))


def embed_folder(
    embedder: Embedder, folder: FaceFolder, cache: FaceCache | bool = True, progress: bool = False
) -> Embedded:
    """Embed every photo of ``folder`` as a face crop; unreadable ones are skipped (warned) and dropped.
    ``cache``: the face cache (True: the user's; False: none)."""
    emb, kept = embed_paths(embedder, folder.paths, Finder.of(embedder, detect="off", cache=cache), progress)
    if not kept:
        raise UserError(f"{folder.root}: no readable photos")
    return Embedded(folder.subset(kept), emb)


def split_test(train: Embedded, test: Embedded) -> EvalData:
    """Separate the test photos of identities present in training from those of new people."""
    known_names = set(train.folder.names)
    names = test.folder.names
    is_known = np.array([names[l] in known_names for l in test.folder.labels])
    if not is_known.any():
        raise UserError(f"{test.folder.root}: none of its people are in the train folder {train.folder.root}")
    if is_known.all():
        raise UserError(
            f"{test.folder.root}: every person in it is in the train folder; the open-set and "
            "new-identity protocols need people absent from training"
        )
    known = test.subset(np.flatnonzero(is_known), names=train.folder.names)
    unknown = test.subset(np.flatnonzero(~is_known), names=[n for n in names if n not in known_names])
    return EvalData(train, known, unknown)


def closed_set(cents: Centroids, emb: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, TOP_K)) -> dict:
    """Top-k accuracies (the true identity among the k nearest centroids)."""
    idx, _ = cents.nearest(emb, max(ks))
    hit = idx == labels[:, None]
    return {**{f"top{k}": float(hit[:, :k].any(1).mean()) for k in ks}, "probes": int(len(labels))}


def draw_unknowns(paths: Sequence[Path], n: int, seed: int = DRAW_SEED) -> np.ndarray:
    """The original's draw: ``n`` of the unknown photos, without replacement, from their list sorted by
    path, with ``numpy.random.default_rng(seed)``. Returns indices into ``paths``."""
    order = np.array(sorted(range(len(paths)), key=lambda i: str(paths[i])), dtype=np.int64)
    pick = np.random.default_rng(seed).choice(len(paths), size=min(n, len(paths)), replace=False)
    return order[pick]


def thin_sweep(thresholds: np.ndarray, acc: np.ndarray, max_points: int = SWEEP_POINTS) -> list[list[float]]:
    """At most ``max_points`` exact points of the sweep, evenly over the threshold range, keeping the
    ends and the best point (each kept point is a real step of the curve)."""
    grid = np.linspace(thresholds[0], thresholds[-1], max(max_points - 3, 2))
    keep = np.searchsorted(thresholds, grid, side="right") - 1
    keep = np.unique(np.concatenate([keep, [0, len(acc) - 1, int(np.argmax(acc))]]))
    return [[round(float(thresholds[i]), 6), round(float(acc[i]), 6)] for i in keep]


def open_set(
    cents: Centroids,
    known_emb: np.ndarray,
    known_labels: np.ndarray,
    unknown_emb: np.ndarray,
    calibrated_threshold: float,
) -> dict:
    """Open-set accuracy (classes = known identities + unknown) swept over every threshold, its
    hindsight best, and the accuracy at the calibrated threshold."""
    emb = np.concatenate([known_emb, unknown_emb])
    truth = np.concatenate([known_labels, np.full(len(unknown_emb), -1)])
    idx, dist = cents.nearest(emb)
    near, nd = idx[:, 0], dist[:, 0]
    t, acc = threshold_sweep(near, nd, truth)
    best_t, best_acc = best_threshold(t, acc)
    cal_acc = accuracy_at(near, nd, truth, calibrated_threshold)
    n_known = len(known_emb)
    accepted = nd <= calibrated_threshold
    return {
        "best_accuracy": best_acc,
        "best_threshold": best_t,
        "calibrated_threshold": float(calibrated_threshold),
        "calibrated_accuracy": cal_acc,
        "gap": best_acc - cal_acc,
        # at the calibrated threshold: known probes named correctly, unknown probes turned away
        "calibrated_known_accuracy": float((accepted[:n_known] & (near[:n_known] == known_labels)).mean()),
        "calibrated_unknown_rejected": float((~accepted[n_known:]).mean()),
        "all_unknown_accuracy": float(len(unknown_emb) / len(emb)),
        "known_probes": int(n_known),
        "unknown_probes": int(len(unknown_emb)),
        "sweep": thin_sweep(t, acc),
    }


def calibration_split(train: FaceFolder, config: dict | None, seed: int) -> tuple[Split, str, str]:
    """The split to calibrate on: the one recorded in the checkpoint when it fits ``train``, else one
    drawn with ``seed``. Returns (split, method, note)."""
    recorded = (config or {}).get("split")
    if recorded:
        split = Split.from_json(recorded)
        _, hold, imp = split.parts(train)
        if len(hold) and len(imp):
            return split, "checkpoint-split", "held out of training by the checkpoint's recorded split"
        if len(hold) and not split.impostor_names:  # trained on every identity: the accept-rate rule
            return (
                split,
                "checkpoint-split-accept-rate",
                ("held-out photos of the checkpoint's recorded split; no identity was held out as impostors"),
            )
    impostors = min(8, max(1, len(train.names) // 4))
    why = "the checkpoint's split does not fit this train folder" if recorded else "the checkpoint records no split"
    return (
        make_split(train, impostors=impostors, holdout_fraction=0.1, seed=seed),
        "drawn-split",
        f"{why}; drawn with seed {seed}: the model may have seen these photos in training",
    )


def calibrate_threshold(train: Embedded, split: Split, accept_rate: float = ACCEPT_RATE) -> dict:
    """Balanced open-set calibration on the train tree alone: gallery = centroids of the split's train
    part, probes = its held-out photos (genuine) and the impostor identities' photos (without impostor
    identities: the threshold accepting ``accept_rate`` of the genuine probes)."""
    part, hold, imp = split.parts(train.folder)
    row = {p: i for i, p in enumerate(train.folder.paths)}

    def emb(f: FaceFolder) -> np.ndarray:
        return train.emb[[row[p] for p in f.paths]]

    cal = calibrate(emb(part), part.labels, len(part.names), emb(hold), hold.labels, emb(imp), accept_rate)
    # the weighted sum can land a rounding error above 1
    return {
        "threshold": cal.threshold,
        "accept_rate": None if cal.accuracy is not None else accept_rate,
        "validation_accuracy": None if cal.accuracy is None else min(cal.accuracy, 1.0),
        "validation_closed_top1": cal.closed_top1,
        "genuine_probes": cal.genuine,
        "impostor_probes": cal.impostors,
        "impostor_names": list(imp.names),
    }


def enrolment(folder: FaceFolder, label: int, shots: int) -> tuple[np.ndarray, np.ndarray]:
    """(enrolled rows, probe rows) of identity ``label``: its ``shots`` lowest-numbered photos
    (``2.jpg`` before ``10.jpg``) and the rest."""
    rows = sorted(np.flatnonzero(folder.labels == label), key=lambda i: numbered_key(folder.paths[i]))
    return np.array(rows[:shots], dtype=np.int64), np.array(rows[shots:], dtype=np.int64)


def new_identities(
    cents: Centroids, known_emb: np.ndarray, known_labels: np.ndarray, new: Embedded, shots: Sequence[int] = SHOTS
) -> dict:
    """Closed-set top-1 among known + newly enrolled centroids, for each number of enrolment shots;
    split into known probes and new probes. An identity with no photo left to probe after enrolling
    ``n`` is left out of the ``n``-shot run (``identities_<n>shot`` says how many took part)."""
    out: dict = {"known_probes": int(len(known_labels))}
    for n in shots:
        new_cents, probe_rows, probe_labels = [], [], []  # centroids of n photos each
        for label in range(len(new.folder.names)):
            enrol, probe = enrolment(new.folder, label, n)
            if len(probe) == 0:
                continue
            probe_labels += [len(cents) + len(new_cents)] * len(probe)
            new_cents.append(new.emb[enrol].mean(0))
            probe_rows.append(probe)
        key = f"top1_{n}shot"
        out[f"identities_{n}shot"] = len(new_cents)
        out[f"new_probes_{n}shot"] = int(sum(map(len, probe_rows)))
        if not new_cents:
            out.update({key: None, f"{key}_known": None, f"{key}_new": None})
            continue
        gallery = cents + Centroids(np.stack(new_cents).astype(np.float32), np.full(len(new_cents), n))
        hit_known = gallery.nearest(known_emb)[0][:, 0] == known_labels
        hit_new = gallery.nearest(new.emb[np.concatenate(probe_rows)])[0][:, 0] == np.array(probe_labels)
        out[key] = float(np.concatenate([hit_known, hit_new]).mean())
        out[f"{key}_known"] = float(hit_known.mean())
        out[f"{key}_new"] = float(hit_new.mean())
    return out


def verification(emb: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict | None:
    """Genuine/impostor pair statistics over all pairs of the given photos (a fixed sample of
    ``VERIFICATION_MAX_PHOTOS`` when there are more): ROC AUC, equal error rate, TAR at FAR 0.1%/1%.
    None when there are no genuine or no impostor pairs."""
    if len(emb) > VERIFICATION_MAX_PHOTOS:
        pick = np.random.default_rng(seed).choice(len(emb), VERIFICATION_MAX_PHOTOS, replace=False)
        emb, labels = emb[pick], labels[pick]
    i, j = np.triu_indices(len(emb), 1)
    same = labels[i] == labels[j]
    if same.all() or not same.any():
        return None
    score = -squared_distances(emb, emb)[i, j]
    fpr, tpr, _ = roc_curve(same, score)
    e = int(np.argmin(np.abs(fpr - (1 - tpr))))
    return {
        "auc": float(roc_auc_score(same, score)),
        "eer": float((fpr[e] + 1 - tpr[e]) / 2),
        "tar_at_far_0.001": float(tpr[fpr <= 1e-3].max()),
        "tar_at_far_0.01": float(tpr[fpr <= 1e-2].max()),
        "genuine_pairs": int(same.sum()),
        "impostor_pairs": int((~same).sum()),
    }


def run_protocol(data: EvalData, config: dict | None, seed: int) -> dict:
    """Every protocol on embedded data; ``config`` is the checkpoint config (for its recorded split)."""
    cents = data.centroids()
    known, unknown = data.known, data.unknown
    split, method, note = calibration_split(data.train.folder, config, seed)
    rate = float((config or {}).get("train_config", {}).get("accept_rate", ACCEPT_RATE))
    cal = {"method": method, "note": note, **calibrate_threshold(data.train, split, rate)}
    if config and config.get("threshold") is not None:
        cal["checkpoint_threshold"] = float(config["threshold"])
    draw = draw_unknowns(unknown.folder.paths, len(known.emb))
    kl = known.folder.labels
    return {
        "closed_set": closed_set(cents, known.emb, kl),
        "calibration": cal,
        "open_set": {**open_set(cents, known.emb, kl, unknown.emb[draw], cal["threshold"]), "draw_seed": DRAW_SEED},
        "open_set_all": open_set(cents, known.emb, kl, unknown.emb, cal["threshold"]),
        "new_identities": {**new_identities(cents, known.emb, kl, unknown), "identities": len(unknown.folder.names)},
        "verification": verification(known.emb, kl),
    }


def prepare(
    embedder: Embedder,
    train_root: str | Path,
    test_root: str | Path,
    cache: FaceCache | bool = True,
    progress: bool = False,
) -> tuple[EvalData, dict]:
    """Discover and embed both trees; returns the data and the seconds each embedding took."""
    train_folder, test_folder = discover(train_root), discover(test_root)
    t0 = time.perf_counter()
    train = embed_folder(embedder, train_folder, cache, progress)
    t1 = time.perf_counter()
    data = split_test(train, embed_folder(embedder, test_folder, cache, progress))
    t2 = time.perf_counter()
    return data, {"embed_train_s": round(t1 - t0, 2), "embed_test_s": round(t2 - t1, 2)}


def evaluate(
    embedder: Embedder,
    train_root: str | Path,
    test_root: str | Path,
    seed: int = 0,
    cache: FaceCache | bool = True,
    progress: bool = False,
) -> tuple[dict, EvalData]:
    """The whole protocol for one embedder: (metrics, the embedded data for figures and guesses)."""
    data, timing = prepare(embedder, train_root, test_root, cache, progress)
    t0 = time.perf_counter()
    metrics = run_protocol(data, getattr(embedder, "config", None), seed)
    timing["protocol_s"] = round(time.perf_counter() - t0, 2)
    header = {
        "model": {"name": embedder.name, "fingerprint": embedder.fingerprint},
        "data": {
            "train": str(train_root),
            "test": str(test_root),
            "train_photos": len(data.train.emb),
            "train_identities": len(data.train.folder.names),
            "test_known_photos": len(data.known.emb),
            "test_unknown_photos": len(data.unknown.emb),
            "unknown_identities": len(data.unknown.folder.names),
        },
        "seed": seed,
        "protocol": PROTOCOL,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return {**header, **metrics, "timing": timing}, data


def guesses(data: EvalData, threshold: float, k: int = TOP_K) -> list[dict]:
    """One row per test photo (known, then unknown): true name, whether known, the ``k`` nearest
    known identities with distances, and the open-set answer at ``threshold``."""
    cents, names = data.centroids(), data.train.folder.names
    rows = []
    for part, is_known in ((data.known, True), (data.unknown, False)):
        idx, dist = cents.nearest(part.emb, k)
        for p, l, ii, dd in zip(part.folder.paths, part.folder.labels, idx, dist):
            row = {"path": str(p), "true_name": part.folder.names[l], "known": is_known}
            for r, (i, d) in enumerate(zip(ii, dd), 1):
                row[f"guess{r}"], row[f"dist{r}"] = names[i], round(float(d), 6)
            row["answer"] = "unknown" if dd[0] > threshold else names[ii[0]]
            rows.append(row)
    return rows


def write_guesses(rows: list[dict], path: str | Path) -> None:
    """``rows`` of :func:`guesses` as CSV (header from the first row)."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
