"""Grouping faces into people, measured: every algorithm on PubFig83 test and on all of LFW.

    .venv/bin/python benchmarks/bench_clustering.py pubfig83 [--models dlib-resnet29-v1 resface64-pubfig83]
    .venv/bin/python benchmarks/bench_clustering.py lfw [--models ...] [--limit N]
    .venv/bin/python benchmarks/bench_clustering.py pubfig83-train [--models ...]   # to choose on, not test

Faces: one per photo, found and aligned once per model as the pipeline does (PubFig83 test crops with
``detect=auto``; LFW photos with the face nearest the centre, as ``evaluate --protocol lfw`` takes it),
embeddings cached under ``--cache`` by model fingerprint. Then each algorithm groups all faces with the
cut from the model's calibrated threshold (``clustering.pair_cut``; HDBSCAN needs none) and is scored
against the identities: BCubed and pairwise precision / recall / F1, clusters found vs people, faces left
unassigned; wall time of the grouping alone (after embedding) and the process's peak RSS growth.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch

from facegallery import clustering
from facegallery.datasets import discover
from facegallery.detection import faces_in
from facegallery.embedder import embed_faces, load_model
from facegallery.images import load_image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pubfig83_faces(emb, root: Path, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    test = discover(root / split)
    vectors = []
    for start in range(0, len(test.paths), 256):
        faces = []
        for p in test.paths[start : start + 256]:
            found = faces_in(load_image(p), "auto", emb.template)
            faces.append(max(found, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1])) if found else None)
        kept = [f for f in faces if f is not None]
        e = embed_faces(emb, kept)
        row = iter(e)
        vectors += [next(row) if f is not None else np.zeros(e.shape[1], np.float32) for f in faces]
    return np.stack(vectors), np.asarray(test.labels)


def lfw_faces(embedders: list, root: Path, limit: int | None) -> tuple[list[np.ndarray], np.ndarray]:
    """Each model's embeddings of every LFW photo's face nearest the centre: found once (the first model's
    template), aligned into each model's template from the same landmarks."""
    from facegallery.alignment import align
    from facegallery.faces import Face, whole_image
    from facegallery.lfw import centre_crop, nearest_centre

    folder = root / "lfw-deepfunneled"
    photos = sorted(str(p.relative_to(folder)) for p in folder.glob("*/*.jpg"))[:limit]
    people = sorted({p.split("/")[0] for p in photos})
    labels = np.array([people.index(p.split("/")[0]) for p in photos])
    per_model: list[list[Face]] = [[] for _ in embedders]
    fallback = 0
    for i, rel in enumerate(photos):
        pixels = load_image(folder / rel)
        face = nearest_centre(faces_in(pixels, "on", embedders[0].template), pixels.shape)
        for faces, emb in zip(per_model, embedders):
            if face is None:
                faces.append(whole_image(centre_crop(pixels), emb.template))
            elif emb.template.name == face.template:
                faces.append(face)
            else:
                crop = align(pixels, np.array(face.landmarks), emb.template, face.scheme)
                faces.append(Face(crop=crop, box=face.box, template=emb.template.name, detected=True))
        fallback += face is None
        if (i + 1) % 2000 == 0:
            print(f"  {i + 1} photos", flush=True)
    print(f"  {len(photos)} LFW photos, {fallback} without a face near the centre (centre crop taken)")
    vectors = [
        np.concatenate([embed_faces(emb, faces[i : i + 512]) for i in range(0, len(faces), 512)])
        for emb, faces in zip(embedders, per_model)
    ]
    return vectors, labels


def run(args, dataset: str) -> None:
    torch.set_num_threads(args.threads)
    embedders = [load_model(name) for name in args.models]
    caches = [args.cache / f"{dataset}-{e.fingerprint.replace(':', '_')}-{args.limit}.npz" for e in embedders]
    if not all(c.is_file() for c in caches):
        t0 = time.perf_counter()
        if dataset.startswith("pubfig83"):
            split = "train" if dataset == "pubfig83-train" else "test"
            found = [pubfig83_faces(e, args.pubfig83, split) for e in embedders]
        else:
            vectors, truth = lfw_faces(embedders, args.lfw, args.limit)
            found = [(v, truth) for v in vectors]
        print(f"  embedded in {time.perf_counter() - t0:.0f} s")
        for cache, (vectors, truth) in zip(caches, found):
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, vectors=vectors, truth=truth)
    for emb, cache in zip(embedders, caches):
        with np.load(cache) as z:
            vectors, truth = z["vectors"], z["truth"]
        cut = clustering.pair_cut(emb.threshold)
        print(f"{dataset}, {emb.name}: {len(vectors)} faces of {len(np.unique(truth))} people; cut {cut:.4f}")
        for algorithm in args.algorithms:
            before = _rss_mb()
            t0 = time.perf_counter()
            labels = clustering.group(vectors, cut, algorithm)
            dt = time.perf_counter() - t0
            f = clustering.grouping_figures(truth, labels)
            print(
                f"  {algorithm:16s} BCubed P/R/F1 {f['bcubed_precision']:.3f}/{f['bcubed_recall']:.3f}/"
                f"{f['bcubed_f1']:.3f}  pairwise P/R/F1 {f['pairwise_precision']:.3f}/{f['pairwise_recall']:.3f}/"
                f"{f['pairwise_f1']:.3f}  clusters {f['clusters']} (people {f['people']}), unassigned "
                f"{f['unassigned']}; {dt:.1f} s, peak RSS +{max(0.0, _rss_mb() - before):.0f} MB",
                flush=True,
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset", choices=["pubfig83", "pubfig83-train", "lfw"])
    ap.add_argument("--models", nargs="+", default=["dlib-resnet29-v1", "resface64-pubfig83"])
    ap.add_argument("--algorithms", nargs="+", default=list(clustering.ALGORITHMS))
    ap.add_argument("--pubfig83", type=Path, default=SHARED / "pubfig83")
    ap.add_argument("--lfw", type=Path, default=SHARED / "lfw")
    ap.add_argument("--limit", type=int, help="LFW: only the first N photos (by path).")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/facegallery-bench"))
    args = ap.parse_args()
    run(args, args.dataset)


if __name__ == "__main__":
    main()
