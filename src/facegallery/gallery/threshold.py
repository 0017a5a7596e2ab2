"""The unknown threshold and the score, calibrated per gallery from its own enrolled photos.

Method (identification, a photo against centroids, by :func:`~facegallery.recognition.centroid_distances`:
squared distance divided by 1 + 1/n for a centroid of n photos):
- genuine distances: leave-one-out, each photo of a person with >= 2 photos against that person's
  centroid computed without it, so of n - 1 photos (what a new photo of an enrolled person looks like);
- impostor distances: each photo against the nearest centroid of the *other* people (what a person who
  is not enrolled looks like: the nearest stranger);
- threshold: for a target false-accept rate (FAR, default 1%) the largest distance at which at most that
  fraction of impostor distances is accepted (``distance <= threshold``), or the equal-error point where
  FAR = FRR, or a distance set by hand (a target too small for the impostor distances to measure is
  extrapolated from a normal fitted to them: :func:`choose_threshold`). The FAR at the threshold is
  stated as the count of impostor distances accepted with a 95% Clopper-Pearson interval over the
  *people* they came from (one person's photos are not independent strangers, so the interval is as
  wide as that many people make it); a target far below what the data can measure is refused
  (:func:`far_floor`).
- score: ``1 / (1 + exp(slope * (distance - threshold)))``, so 0.5 at the threshold and above 0.5
  exactly for the faces that get a name; the slope is a class-balanced logistic fit on the genuine vs
  impostor distances (how fast confidence falls across the threshold for this model).

Verification (photo against photo) does not depend on who else is enrolled: it uses the model's own
calibrated threshold, brought to photo-vs-photo distances (a pair is a "centroid" of one photo: times
:func:`~facegallery.recognition.count_factor` of 1, i.e. 2); the gallery's photo pairs only estimate its
error rates. A model without a calibrated threshold uses the gallery's pairs when it has enough.

A gallery too small to calibrate (fewer than :data:`MIN_PEOPLE` people or :data:`MIN_SAMPLES` genuine
or impostor distances) falls back to the model's own calibrated threshold with the slope
:data:`FALLBACK_SLOPE`. A gallery of fewer than :data:`MIN_STRANGERS` people has too few strangers for
each photo's nearest one to stand for people never enrolled (with 2-4 people the FAR threshold landed at
1.2-1.7 against a model's 0.69, naming most strangers): its unknown threshold is the model's, or the
gallery's own where that is stricter, and no FAR is claimed for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import numpy as np
from scipy.stats import beta, norm

from facegallery.recognition import count_factor

MIN_PEOPLE = 2
MIN_SAMPLES = 10
#: People a gallery needs before its own nearest-stranger distances set the unknown threshold alone.
MIN_STRANGERS = 10
DEFAULT_FAR = 0.01
#: Distances sampled at most per kind (a million-person gallery calibrates in seconds).
MAX_SAMPLES = 20_000
#: Score slope used without calibration data (per unit of squared distance): the score falls from
#: 0.9 to 0.1 over +-0.15 around the threshold, about the genuine/impostor overlap of a trained model.
FALLBACK_SLOPE = 15.0
#: Distance used as threshold and score midpoint when neither gallery nor model is calibrated.
UNCALIBRATED_THRESHOLD = 1.0
#: What a :class:`Calibration` was fitted on, bumped when the distances change so that one cached by an
#: older version is recomputed. 2: identification distances divided by 1 + 1/n (1: raw squared distances);
#: 3: galleries of fewer than MIN_STRANGERS people keep the model's threshold where it is stricter;
#: 4: score 0.5 at the threshold, FAR intervals, verification at the model's pair threshold.
VERSION = 4
#: A hand-set threshold accepting more than this share of the gallery's nearest strangers is warned about.
HAND_SET_WARN = 0.05
#: How far below what its impostor distances can measure a target FAR may be set (extrapolated).
EXTRAPOLATE_MAX = 100.0
#: Confidence of the stated FAR intervals.
CONFIDENCE = 0.95

Search = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def far_interval(accepted: int, impostors: int, people: int) -> tuple[float, float]:
    """95% Clopper-Pearson interval of a false-accept rate seen as ``accepted`` of ``impostors`` distances
    that came from ``people`` people: the counts are scaled down to ``people`` independent trials (the
    photos of one person share their nearest stranger), so a few people give a wide interval."""
    n = max(1, min(impostors, people))
    k = accepted * n / max(impostors, 1)
    alpha = 1.0 - CONFIDENCE
    lo = 0.0 if k <= 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k >= n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def far_floor(impostors: int) -> float:
    """The smallest target FAR that ``impostors`` distances can tell from zero: one accepted of them."""
    return 1.0 / max(impostors, 1)


@dataclass
class Fit:
    """A threshold with its expected error rates and the score's slope (the score is 0.5 at the threshold)."""

    threshold: float
    far: float | None  # expected false-accept rate at ``threshold`` (None: not measurable)
    frr: float | None  # expected false-reject rate
    slope: float
    genuine: int  # distances it was fitted on
    impostors: int
    accepted: int | None = None  # impostor distances at or under the threshold
    far_low: float | None = None  # the FAR's 95% interval
    far_high: float | None = None

    def score(self, distance: np.ndarray | float) -> np.ndarray:
        """Confidence that a distance is the same person, in [0, 1]: 0.5 at the threshold, above it
        exactly when the distance is accepted (module docstring)."""
        z = np.clip(self.slope * (np.asarray(distance, dtype=np.float64) - self.threshold), -60, 60)
        return 1.0 / (1.0 + np.exp(z))


@dataclass
class Calibration:
    """The gallery's unknown threshold (photo vs centroid) and verification threshold (photo vs photo)."""

    source: str  # 'gallery' (its own photos), 'model' (the model's threshold) or 'hand-set'
    method: str  # 'far=0.01', 'eer' or 'raw'
    identify: Fit
    verify: Fit
    generation: int = -1  # the gallery generation it was computed for
    version: int = VERSION  # the distances it was fitted on (see VERSION)
    warning: str | None = None  # what the data cannot back up about this rule, if anything

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Calibration | None:
        """A cached calibration, or None when it was written by another version (recomputed then)."""
        if d.get("version") != VERSION:
            return None
        names = {f.name for f in fields(Fit)}
        try:
            return cls(
                d["source"],
                d["method"],
                Fit(**{k: v for k, v in d["identify"].items() if k in names}),
                Fit(**{k: v for k, v in d["verify"].items() if k in names}),
                d.get("generation", -1),
                d["version"],
                d.get("warning"),
            )
        except (KeyError, TypeError):
            return None


def logistic_fit(genuine: np.ndarray, impostor: np.ndarray, ridge: float = 1e-6) -> tuple[float, float]:
    """(midpoint, slope) of P(genuine | d) = 1 / (1 + exp(slope (d - midpoint))), by Newton's method on
    the class-balanced log-loss with a small ridge on the slope (separable data stays finite)."""
    d = np.concatenate([genuine, impostor]).astype(np.float64)
    y = np.concatenate([np.ones(len(genuine)), np.zeros(len(impostor))])
    w = np.concatenate([np.full(len(genuine), 0.5 / len(genuine)), np.full(len(impostor), 0.5 / len(impostor))])
    mu, sd = d.mean(), d.std() or 1.0
    x = np.stack([np.ones_like(d), (d - mu) / sd], 1)
    beta = np.zeros(2)
    reg = np.diag([0.0, ridge])
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ beta, -60, 60)))
        grad = x.T @ (w * (p - y)) + reg @ beta
        hess = (x * (w * p * (1 - p))[:, None]).T @ x + reg + 1e-12 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-10:
            break
    a, b = beta  # logit = a + b (d - mu) / sd, with b < 0 when genuine distances are smaller
    slope = -b / sd
    midpoint = mu - a * sd / b if b != 0 else mu
    return float(midpoint), float(slope)


def error_rates(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> tuple[float, float]:
    """(FAR, FRR) at ``threshold``: impostors accepted (<=), genuine rejected (>)."""
    return float((impostor <= threshold).mean()), float((genuine > threshold).mean())


def choose_threshold(genuine: np.ndarray, impostor: np.ndarray, far: float | None, extrapolate: bool = True) -> float:
    """The largest threshold with empirical FAR <= ``far``; with ``far=None`` the equal-error point.

    Where ``far`` is below what the impostor distances can measure (fewer than 1/far of them: a gallery
    of under ~30 people at 1%), the empirical threshold only says "under the nearest stranger seen"; with
    ``extrapolate`` it is then also kept under the ``far`` quantile of a normal fitted to those distances
    (measured on CelebA galleries of 10 and 20 people: strangers named 1.2% / 0.8% instead of 4.4% / 3.4%
    at a 1% target, RESULTS 15)."""
    imp = np.sort(impostor.astype(np.float64))
    if far is not None:
        allowed = int(np.floor(far * len(imp) + 1e-9))  # impostors that may be accepted
        if allowed >= len(imp):
            return float(imp[-1])
        empirical = float(np.nextafter(imp[allowed], -np.inf))
        if not extrapolate or far * len(imp) >= 1 or len(imp) < 3:
            return empirical
        return min(empirical, float(imp.mean() + norm.ppf(far) * imp.std(ddof=1)))
    cands = np.unique(np.concatenate([genuine, impostor]).astype(np.float64))
    far_at = np.searchsorted(imp, cands, side="right") / len(imp)
    frr_at = 1.0 - np.searchsorted(np.sort(genuine), cands, side="right") / len(genuine)
    return float(cands[int(np.argmin(np.abs(far_at - frr_at)))])


def fit(
    genuine: np.ndarray,
    impostor: np.ndarray,
    far: float | None = DEFAULT_FAR,
    raw: float | None = None,
    people: int | None = None,
    extrapolate: bool = True,
) -> Fit:
    """Threshold (raw, else for ``far``, else equal-error with ``far=None``; ``extrapolate`` as in
    :func:`choose_threshold`), error rates with the FAR's interval over ``people`` (default: as many as
    distances), and the score's slope."""
    threshold = raw if raw is not None else choose_threshold(genuine, impostor, far, extrapolate)
    fa, fr = error_rates(genuine, impostor, threshold)
    _, slope = logistic_fit(genuine, impostor)
    accepted = int((impostor <= threshold).sum())
    lo, hi = far_interval(accepted, len(impostor), people if people is not None else len(impostor))
    return Fit(float(threshold), fa, fr, slope, len(genuine), len(impostor), accepted, lo, hi)


def fallback(model_threshold: float | None, raw: float | None = None, factor: float = 1.0) -> Fit:
    """No calibration data: the model's threshold times ``factor`` (or the user's raw one)."""
    base = (model_threshold if model_threshold is not None else UNCALIBRATED_THRESHOLD) * factor
    return Fit(float(raw if raw is not None else base), None, None, FALLBACK_SLOPE / factor, 0, 0)


def identification_distances(
    emb: np.ndarray, labels: np.ndarray, own_centroid: np.ndarray, own_count: np.ndarray, search: Search
) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) photo-vs-centroid distances as described in the module docstring.

    Row i is a photo of person ``labels[i]``, whose centroid (of ``own_count[i]`` photos, this one
    included) is ``own_centroid[i]``; ``search(q, k) -> (person ids, centroid distances)`` searches all
    centroids.
    """
    labels = np.asarray(labels)
    multi = own_count >= 2
    n = own_count[multi].astype(np.float64)
    loo = (own_centroid[multi] * n[:, None] - emb[multi]) / (n[:, None] - 1)
    genuine = ((emb[multi] - loo) ** 2).sum(1) / count_factor(n - 1)
    impostor = np.empty(len(emb))
    for s in range(0, len(emb), 1024):
        ids, dist = search(emb[s : s + 1024], 2)
        own = ids[:, 0] == labels[s : s + 1024]
        impostor[s : s + 1024] = np.where(own, dist[:, 1], dist[:, 0])
    return genuine.astype(np.float64), impostor[np.isfinite(impostor)]


def pair_distances(
    emb: np.ndarray, labels: np.ndarray, max_samples: int = MAX_SAMPLES, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) photo-vs-photo distances: pairs of one person's photos, pairs of two people's."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    groups = [g for g in np.split(order, bounds) if len(g) >= 2]
    pairs = [(g[i], g[j]) for g in groups for i in range(len(g)) for j in range(i + 1, len(g))]
    if len(pairs) > max_samples:
        pairs = [pairs[i] for i in rng.choice(len(pairs), max_samples, replace=False)]
    genuine = np.array([((emb[a] - emb[b]) ** 2).sum() for a, b in pairs], dtype=np.float64)
    if len(np.unique(labels)) < 2:
        return genuine, np.zeros(0)
    m = min(max_samples, len(emb) * (len(emb) - 1) // 2)
    a, b = rng.integers(len(emb), size=(2, 4 * m))
    keep = labels[a] != labels[b]
    a, b = a[keep][:m], b[keep][:m]
    impostor = ((emb[a] - emb[b]) ** 2).sum(1).astype(np.float64)
    return genuine, impostor


#: Photo-vs-photo distance per photo-vs-person distance at the same evidence: a photo is a centroid of one.
PAIR_FACTOR = float(count_factor(np.array([1]))[0])


def pair_fit(model_threshold: float | None, genuine: np.ndarray, impostor: np.ndarray, people: int) -> Fit:
    """Verification's threshold (module docstring): the model's, brought to pairs, with the error rates
    of the gallery's pairs at it where there are enough; else the gallery's pairs alone."""
    enough = min(len(genuine), len(impostor)) >= MIN_SAMPLES and people >= MIN_PEOPLE
    if model_threshold is None:
        return fit(genuine, impostor, DEFAULT_FAR, people=people) if enough else fallback(None)
    if not enough:
        return fallback(model_threshold, factor=PAIR_FACTOR)
    return fit(genuine, impostor, raw=float(model_threshold) * PAIR_FACTOR, people=people)


def calibrate(
    emb: np.ndarray,
    labels: np.ndarray,
    own_centroid: np.ndarray,
    own_count: np.ndarray,
    search: Search,
    people: int,
    model_threshold: float | None,
    far: float | None = DEFAULT_FAR,
    raw: float | None = None,
) -> Calibration:
    """The gallery's :class:`Calibration` (see module docstring) from a sample of its photos (arguments
    as in :func:`identification_distances`; ``people`` enrolled in all). ``far=None`` means equal-error;
    ``raw`` a threshold set by hand (identification only)."""
    method = "raw" if raw is not None else ("eer" if far is None else f"far={far:g}")
    sampled = len(np.unique(labels))
    pgen, pimp = pair_distances(emb, labels) if len(emb) else (np.zeros(0), np.zeros(0))
    verify = pair_fit(model_threshold, pgen, pimp, sampled)
    if people >= MIN_PEOPLE and (own_count >= 2).sum() >= MIN_SAMPLES:
        gen, imp = identification_distances(emb, labels, own_centroid, own_count, search)
        if min(len(gen), len(imp)) >= MIN_SAMPLES:
            # below MIN_STRANGERS people the model's threshold caps it instead of an extrapolation
            ident = fit(gen, imp, far, raw, people=sampled, extrapolate=people >= MIN_STRANGERS)
            source, warning = ("hand-set" if raw is not None else "gallery"), None
            if raw is None and people < MIN_STRANGERS and model_threshold is not None:
                thr = min(ident.threshold, float(model_threshold))
                ident = Fit(thr, None, error_rates(gen, imp, thr)[1], ident.slope, ident.genuine, ident.impostors)
                source = "model" if thr == model_threshold else "gallery"
            elif raw is not None and ident.far is not None and ident.far > HAND_SET_WARN:
                warning = (
                    f"the threshold {raw:g}, set by hand, accepts {ident.far:.0%} ({ident.accepted} of "
                    f"{ident.impostors}) of the gallery's nearest strangers: most people never enrolled "
                    "will be given a name"
                )
            elif far is not None and raw is None and far < far_floor(len(imp)):
                warning = (
                    f"a target FAR of {far:g} cannot be measured with {len(imp)} impostor distances (the smallest "
                    f"is {far_floor(len(imp)):.2g}): the threshold is extrapolated from a normal fitted to them"
                )
            return Calibration(source, method, ident, verify, warning=warning)
    ident = fallback(model_threshold, raw)
    return Calibration("hand-set" if raw is not None else "model", method, ident, verify)
