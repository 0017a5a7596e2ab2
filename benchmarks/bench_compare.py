"""Side by side on exactly the same protocol and images: our models and `face_recognition`.

    pip install dlib-bin face_recognition_models && pip install --no-deps face_recognition   # benchmark only
    .venv/bin/python benchmarks/bench_compare.py --data ../shared/data/pubfig83 \
        --models runs/seed-cnn-original resface64-pubfig83 face_recognition --out runs/compare
    # after changing one model: re-evaluate only models whose fingerprint changed, re-time all of them
    .venv/bin/python benchmarks/bench_compare.py ... --reuse

`face_recognition` (dlib's ResNet, trained on ~3M faces) gets its HOG face box, falling back to the
whole image when none is found. Its throughput is measured the way a user runs it: HOG detection +
encoding per image, one process, one thread. Ours: embedding only, batch 256, one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from multiprocessing import Pool
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from facegallery.embedder import load_model  # noqa: E402
from facegallery.evaluation import PROTOCOL, evaluate  # noqa: E402


def _fr_encode(img: np.ndarray) -> np.ndarray:
    import face_recognition

    locs = face_recognition.face_locations(img, model="hog")
    if locs:
        locs = [max(locs, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))]
    else:
        h, w = img.shape[:2]
        locs = [(0, w, h, 0)]
    v = face_recognition.face_encodings(img, known_face_locations=locs)[0]
    return v / np.linalg.norm(v)


class FaceRecognitionEmbedder:
    """`face_recognition` behind our embedder contract (unit rows, so distances compare with ours)."""

    name, input_size, fingerprint, threshold, config = "face_recognition", 100, "face_recognition-hog", None, None

    def __init__(self, processes: int):
        self.pool = Pool(processes) if processes > 1 else None

    def embed(self, images, batch_size: int = 256) -> np.ndarray:
        images = list(images)
        out = self.pool.map(_fr_encode, images, chunksize=16) if self.pool else [_fr_encode(i) for i in images]
        return np.asarray(out, np.float32).reshape(len(images), 128)


def throughput(embedder, n: int = 256) -> float:
    """Images/s on one thread, on PubFig83-sized random pixels (face_recognition: real photos below)."""
    torch.set_num_threads(1)
    px = np.random.default_rng(0).integers(0, 256, (n, 100, 100, 3), dtype=np.uint8)
    embedder.embed(px[:32])
    t = time.perf_counter()
    embedder.embed(px)
    return n / (time.perf_counter() - t)


def fr_throughput(data: Path, n: int = 128) -> float:
    """face_recognition on real test photos (HOG finds faces there), one process, one thread."""
    from facegallery.images import load_image

    paths = sorted((data / "test").rglob("*.jpg"))[:n]
    imgs = [load_image(p) for p in paths]
    t = time.perf_counter()
    for im in imgs:
        _fr_encode(im)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("FACEGALLERY_DATA", "../shared/data/pubfig83")))
    ap.add_argument("--models", nargs="+", default=["resface64-pubfig83", "face_recognition"])
    ap.add_argument("--processes", type=int, default=os.cpu_count(), help="face_recognition worker processes")
    ap.add_argument("--out", type=Path, default=Path("runs/compare"))
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="Reuse OUT/<model>.json accuracy when its fingerprint and the protocol version match "
        "(throughput is always timed).",
    )
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models:
        t0 = time.perf_counter()
        if name == "face_recognition":
            emb = FaceRecognitionEmbedder(args.processes)
            rate = fr_throughput(args.data)
        else:
            emb = load_model(name)
            torch.set_num_threads(os.cpu_count())
        saved = args.out / f"{Path(name).name}.json"
        old = json.loads(saved.read_text()) if args.reuse and saved.is_file() else None
        if (
            old
            and old["model"]["fingerprint"] == emb.fingerprint
            and old.get("protocol") == PROTOCOL
            and old["data"]["train"] == str(args.data / "train")
            and old["data"]["test"] == str(args.data / "test")
        ):
            m = old  # same weights, same data: the protocol is deterministic
        else:
            m, _ = evaluate(emb, args.data / "train", args.data / "test")
        if name != "face_recognition":
            rate = throughput(emb)
        m["throughput_1core"] = rate
        if m is not old:
            m["wall_s"] = time.perf_counter() - t0
        saved.write_text(json.dumps(m, indent=2))
        o, n = m["open_set"], m["new_identities"]
        rows.append(
            (
                Path(name).name,
                m["closed_set"]["top1"],
                m["closed_set"]["top6"],
                o["calibrated_accuracy"],
                o["best_accuracy"],
                m["open_set_all"]["calibrated_accuracy"],
                n["top1_5shot"],
                rate,
            )
        )
        print(rows[-1], flush=True)
    print(
        "\n| model | closed top-1 | closed top-6 | open (1260) calibrated | open (1260) best in hindsight "
        "| open (all 3283) calibrated | new ids 5-shot top-1 | images/s, 1 core |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.3f} | {r[2]:.3f} | {r[3]:.3f} | {r[4]:.3f} | {r[5]:.3f} | {r[6]:.3f} | {r[7]:.0f} |")


if __name__ == "__main__":
    main()
