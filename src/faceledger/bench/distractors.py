"""Synthetic distractors for 1:N benchmarks at gallery sizes no public dataset reaches.

Two kinds, both generated in seeded chunks (chunk ``c`` of a source depends only on its
seed and ``c``), so that a gallery of ten million can be made, indexed and searched
exactly again chunk by chunk without ever being held whole:

``random``
    Uniformly random unit vectors (normalised standard normals), one identity each. The
    worst case for graph and cluster indexes (no structure to exploit), and far easier than
    real faces for the matcher: their scores against any probe are N(0, 1/d), much
    narrower than real non-mates'.

``face`` (:class:`FaceDistractors`)
    Vectors distributed like real face embeddings, made from LFW people who are never
    probes nor enrolled (the *source* people). Each distractor identity is a two-level
    sample:

    * it is given two source people ``i`` != ``j`` (drawn by image, so that people weigh
      as their images do among real non-mates; for an identity of 2-3 templates, people
      with two images at least) and a Gaussian identity offset ``b ~ N(0, S_b)``;
    * each of its 1-3 templates (40/35/25 %) takes the next image of ``i`` and of ``j``
      (cycling through each person's images) and a Gaussian within-identity offset
      ``w ~ N(0, S_w)``, and is
      ``normalise(mu + sqrt((1 - g) / 2) * ((x_i - mu) + (x_j - mu)) + sqrt(g) * (b + w))``.

    ``mu`` is the mean of the source images, ``S_w`` the pooled covariance of each source
    person's images about their own mean, ``S_b`` the covariance of the people's means less
    ``mean(1/n) * S_w`` (what averaging n images adds), clipped to be positive
    semi-definite; both Gaussians are sampled in their eigenbasis (the PCA basis). A
    template's covariance is ``S_b + S_w`` for every ``g``: ``g`` only trades the real
    structure of a "morph" of two real embeddings for Gaussian structure.

    Why not a plain Gaussian: every projection of a Gaussian is Gaussian, but real non-mate
    scores have a heavier upper tail than a Gaussian of the same covariance (LFW,
    EdgeFace-XXS: per probe, the best of ~2,000 real non-mates scores 0.305 at the median,
    the best of as many Gaussian samples 0.28; the excess is not in a few principal
    components: it survives removing the top 50 and vanishes when the coordinates are
    shuffled independently). A morph keeps that joint structure. Against a probe ``p``
    (never a source person) its centred score before normalising is
    ``sqrt((1 - g) / 2) * (s_i + s_j) + sqrt(g) * s_gauss``, with ``s_i``, ``s_j`` two
    independent real non-mate scores of that very probe: its mean and variance are those
    of real non-mates, and as cumulants of independent terms add, its excess kurtosis is
    ``(1 - g)**2 / 2`` times theirs: a morph is never heavier-tailed, so never
    systematically closer to real people, than real non-mates are. (It *is* close to its
    two source people, which is why they are kept out of the probes and the gallery.)

    The price of real structure is reuse: a source image appears in many distractors,
    and two distractors that share one are alike (cosine ~ ``(1 - g) / 2``), about one
    pair in 1,000 whatever the gallery size; at small ``g`` distractors crowd each other
    more than they crowd real faces, so that real faces (the mates) become outliers of the
    distractor cloud, which misleads graph and cluster indexes (with ``g = 0.5`` the
    nearest of 50,000 distractors scores 0.415 against a distractor, 0.343 against a real
    face). :func:`calibrate` therefore chooses ``g`` on a grid (0.5 to 1) by three
    comparisons with real faces: distractors against the probes beside the probes against
    *held-out* real people (LFW people neither probes nor sources) and distractors among
    themselves beside the held-out people among themselves (median, 99th and 99.9th
    percentiles), and the nearest and 10th nearest of 50,000 distractors to a held-out
    face beside those to a fresh distractor; the smallest largest gap wins (``g = 0.75``
    for EdgeFace-XXS, ``0.65`` for MobileFaceNet, on all of LFW). :func:`score_check`
    states the result, with the two-sample Kolmogorov-Smirnov statistic against the
    held-out non-mates and against LFW's non-mated pairs.

    Measured on all of LFW (840 probes, 2,035 held-out people; EdgeFace-XXS 512-d /
    MobileFaceNet 128-d): KS against held-out non-mates 0.0082 / 0.0099, against the
    3,000 non-mated pairs of ``pairs.txt`` 0.019 / 0.014 (uniformly random vectors: 0.186 /
    0.076 and 0.189 / 0.080); score quantiles against the probes (median, 99th, 99.9th)
    0.013, 0.201, 0.261 beside held-out 0.011, 0.205, 0.275 (512-d); among themselves
    0.013, 0.204, 0.265 beside 0.011, 0.203, 0.275; nearest of 50,000 distractors 0.351
    to a distractor, 0.339 to a real face; templates of one identity 0.618 at the median
    beside 0.626 for real mated pairs. What remains is a slightly light extreme tail
    against the probes (per probe, the best of 2,035: 0.282 at the median beside 0.305
    for real people; a plain two-level Gaussian, ``g = 1``: 0.280), so rank-1 in a large
    gallery of them is, if anything, a little optimistic. For graph indexes they are
    harder than real faces (equal size, 7,212: HNSW M=16, efSearch=16 found the exact
    first answer for 77 % of probes among them at ``g = 0.5``, 78 % among two-level
    Gaussians, 89 % among real LFW faces, 98 % among random vectors), so recall measured on
    them is conservative.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol

import numpy as np

DISTRACTOR_KINDS = ("random", "face")
SIZES = np.array([1, 2, 3])
SIZE_SHARES = np.array([0.40, 0.35, 0.25])
"""Templates per face-like distractor identity (mean 1.85)."""
GAMMA_GRID = (0.5, 0.65, 0.75, 0.85, 1.0)
"""Gaussian shares :func:`calibrate` tries (below 0.5 distractors sharing a source image
crowd each other: see the module notes)."""
NEIGHBOUR_SAMPLE = 50_000
"""Distractors the nearest-neighbour comparison of :func:`calibrate` searches."""
QUANTILES = (0.5, 0.99, 0.999)
"""The score quantiles the calibration matches."""


@dataclass(frozen=True)
class Batch:
    """One chunk of distractors: unit vectors and, per row, a chunk-local identity number
    (rows of one identity are adjacent)."""

    vectors: np.ndarray
    identity: np.ndarray

    @property
    def identities(self) -> int:
        return int(self.identity[-1]) + 1 if self.identity.size else 0


class DistractorSource(Protocol):
    kind: ClassVar[str]

    @property
    def dim(self) -> int: ...

    def chunk(self, number: int, size: int) -> Batch: ...

    def describe(self) -> dict[str, Any]: ...


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def chunks(source: DistractorSource, total: int, size: int) -> Iterator[tuple[int, Batch]]:
    """(offset, batch) for ``total`` distractors in chunks of ``size`` (the last smaller);
    the same (source, size) always yields the same vectors."""
    for number, start in enumerate(range(0, total, size)):
        yield start, source.chunk(number, min(size, total - start))


@dataclass(frozen=True)
class RandomDistractors:
    """Uniform on the unit sphere; one identity per vector."""

    kind: ClassVar[str] = "random"
    dimension: int
    seed: int = 0

    @property
    def dim(self) -> int:
        return self.dimension

    def chunk(self, number: int, size: int) -> Batch:
        rng = np.random.default_rng([self.seed, number, 1])
        vectors = normalise(rng.standard_normal((size, self.dimension), dtype=np.float32))
        return Batch(vectors, np.arange(size, dtype=np.int64))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "method": "uniform on the unit sphere", "seed": self.seed}


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """A (d, d) matrix A with A @ A.T = cov clipped to PSD (eigenbasis: the PCA basis)."""
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    return np.asarray(vectors * np.sqrt(np.clip(values, 0.0, None)), np.float32)


@dataclass(frozen=True)
class FaceDistractors:
    """Face-like distractors (see the module notes); fit with :meth:`fit`."""

    kind: ClassVar[str] = "face"
    mu: np.ndarray
    sources: np.ndarray
    """(n, d) source images minus ``mu``, grouped by person."""
    person_of: np.ndarray
    """(n,) person number of each source image."""
    first: np.ndarray
    """(people,) row of each person's first image; ``count`` their number of images."""
    count: np.ndarray
    between: np.ndarray
    """A with A @ A.T = S_b."""
    within: np.ndarray
    """A with A @ A.T = S_w."""
    gamma: float = 0.2
    seed: int = 0

    @classmethod
    def fit(
        cls, people: Sequence[np.ndarray], gamma: float = 0.2, seed: int = 0
    ) -> FaceDistractors:
        """From the unit embeddings of each source person (one (n_i, d) array each; at
        least two people, at least one of them with two images)."""
        groups = [np.asarray(g, np.float32).reshape(len(g), -1) for g in people if len(g)]
        if len(groups) < 2 or not any(len(g) > 1 for g in groups):
            raise ValueError("face-like distractors need two source people, one with 2 images")
        images = np.concatenate(groups)
        dim = images.shape[1]
        mu = images.mean(axis=0)
        counts = np.array([len(g) for g in groups])
        deviations = np.concatenate([g - g.mean(axis=0) for g in groups if len(g) > 1])
        s_within = (
            deviations.T.astype(np.float64) @ deviations / int((counts[counts > 1] - 1).sum())
        )
        means = np.stack([g.mean(axis=0) for g in groups]).astype(np.float64)
        s_means = (
            np.cov(means.T)
            if len(groups) > 2
            else np.outer(means[0] - means[1], means[0] - means[1]) / 2
        )
        s_between = s_means.reshape(dim, dim) - np.mean(1.0 / counts) * s_within
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        person_of = np.repeat(np.arange(len(groups)), counts)
        return cls(
            mu=mu.astype(np.float32),
            sources=(images - mu).astype(np.float32),
            person_of=person_of,
            first=first,
            count=counts,
            between=_psd_sqrt(s_between),
            within=_psd_sqrt(s_within),
            gamma=float(gamma),
            seed=seed,
        )

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    @property
    def people(self) -> int:
        return int(self.count.shape[0])

    def with_gamma(self, gamma: float) -> FaceDistractors:
        return replace(self, gamma=float(gamma))

    def chunk(self, number: int, size: int) -> Batch:
        rng = np.random.default_rng([self.seed, number, 2])
        sizes = rng.choice(SIZES, size=max(size, 1), p=SIZE_SHARES)
        ends = np.cumsum(sizes)
        k = int(np.searchsorted(ends, size)) + 1 if size else 0
        sizes = sizes[:k].copy()
        if k:
            sizes[-1] -= int(ends[k - 1] - size)  # the last identity ends at the chunk's end
        identity = np.repeat(np.arange(k), sizes)
        rank = np.arange(size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        # two source people per identity, drawn by image, never the same person twice; an
        # identity of 2 or 3 templates draws people with several images (new images each)
        several = sizes[:k] > 1
        a, b = self._draw(rng, several), self._draw(rng, several)
        clash = self.person_of[a] == self.person_of[b]
        while clash.any():
            b[clash] = self._draw(rng, several[clash])
            clash = self.person_of[a] == self.person_of[b]
        rows_a = self._next_images(a[identity], rank)
        rows_b = self._next_images(b[identity], rank)
        x = self.mu + np.float32(np.sqrt((1 - self.gamma) / 2)) * (
            self.sources[rows_a] + self.sources[rows_b]
        )
        if self.gamma > 0:
            dim = self.dim
            offset = rng.standard_normal((k, dim), dtype=np.float32) @ self.between.T
            spread = rng.standard_normal((size, dim), dtype=np.float32) @ self.within.T
            x += np.float32(np.sqrt(self.gamma)) * (offset[identity] + spread)
        return Batch(normalise(x), identity.astype(np.int64))

    def _draw(self, rng: np.random.Generator, several: np.ndarray) -> np.ndarray:
        """One source image per identity: any image, or for ``several`` one of a person
        with two images at least."""
        rows = rng.integers(0, self.sources.shape[0], several.size)
        multi = np.flatnonzero(self.count[self.person_of] > 1)
        rows[several] = multi[rng.integers(0, multi.size, int(several.sum()))]
        return rows

    def _next_images(self, start: np.ndarray, rank: np.ndarray) -> np.ndarray:
        """The ``rank``-th image after ``start`` of the same person (cycling)."""
        person = self.person_of[start]
        local = start - self.first[person]
        return np.asarray(self.first[person] + (local + rank) % self.count[person])

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "method": "two-level: morph of two real source embeddings + Gaussian identity "
            "and within-identity offsets (share gamma), normalised",
            "gamma": self.gamma,
            "source_people": self.people,
            "source_images": int(self.sources.shape[0]),
            "templates_per_identity": dict(zip(SIZES.tolist(), SIZE_SHARES.tolist(), strict=True)),
            "seed": self.seed,
        }


# ---- checking them against real non-mates ---------------------------------------------------


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic sup |F_a - F_b|."""
    a, b = np.sort(np.ravel(a)), np.sort(np.ravel(b))
    if not a.size or not b.size:
        return float("nan")
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / a.size
    fb = np.searchsorted(b, grid, side="right") / b.size
    return float(np.abs(fa - fb).max())


def _thin(values: np.ndarray, limit: int = 2_000_000) -> np.ndarray:
    values = np.ravel(values)
    return values[:: max(1, values.size // limit)]


def quantiles(scores: np.ndarray) -> dict[str, float]:
    scores = np.ravel(scores)
    out = {f"q{q:g}": float(np.quantile(scores, q)) for q in QUANTILES}
    out["max"] = float(scores.max()) if scores.size else float("nan")
    return out


def score_check(
    batch: Batch,
    probes: np.ndarray,
    held_out: np.ndarray,
    pairs: np.ndarray | None = None,
    mated: np.ndarray | None = None,
) -> dict[str, Any]:
    """A sample of distractors beside real non-mates: their scores against the probes
    (against the probes' scores with held-out real people, and LFW's non-mated pairs),
    per-probe maxima over equally many, scores among themselves across identities, and
    between templates of one identity (beside real mated pairs): quantiles and KS."""
    fake = probes @ batch.vectors.T
    real = probes @ held_out.T
    out: dict[str, Any] = {
        "probes": int(probes.shape[0]),
        "distractors_sampled": int(batch.vectors.shape[0]),
        "held_out_images": int(held_out.shape[0]),
        "vs_probes": quantiles(fake),
        "held_out_vs_probes": quantiles(real),
        "ks_vs_held_out": ks_statistic(_thin(fake), _thin(real)),
    }
    if fake.shape[1] and real.shape[1]:
        n = min(fake.shape[1], real.shape[1])  # maxima over equally many
        out["per_probe_max_over"] = n
        out["per_probe_max_median"] = float(np.median(fake[:, :n].max(axis=1)))
        out["held_out_per_probe_max_median"] = float(np.median(real[:, :n].max(axis=1)))
    if pairs is not None and pairs.size:
        out["lfw_non_mated_pairs"] = int(pairs.size)
        out["lfw_non_mated"] = quantiles(pairs)
        out["ks_vs_lfw_pairs"] = ks_statistic(_thin(fake), pairs)
    limit = min(batch.vectors.shape[0], held_out.shape[0], 3000)
    part = batch.vectors[:limit]
    own = part @ part.T
    out["among_themselves"] = quantiles(_different(own, batch.identity[:limit]))
    out["held_out_among_themselves"] = quantiles(
        _different(held_out[:limit] @ held_out[:limit].T, None)
    )
    upper = np.triu_indices(limit, 1)
    same = batch.identity[:limit][upper[0]] == batch.identity[:limit][upper[1]]
    if same.any():
        out["same_identity_median"] = float(np.median(own[upper][same]))
    if mated is not None and mated.size:
        out["real_mated_median"] = float(np.median(mated))
    return out


def _different(scores: np.ndarray, identity: np.ndarray | None) -> np.ndarray:
    """The upper-triangle scores of a square matrix between rows of different identities."""
    upper = np.triu_indices(scores.shape[0], 1)
    values = scores[upper]
    if identity is None:
        return values
    return values[identity[upper[0]] != identity[upper[1]]]


def nearest(
    queries: np.ndarray, gallery: np.ndarray, ranks: Sequence[int] = (1, 10)
) -> list[float]:
    """Median score of each query's ``ranks``-th nearest neighbour in ``gallery``."""
    scores = queries @ gallery.T
    top = -np.partition(-scores, max(ranks) - 1, axis=1)[:, : max(ranks)]
    top = -np.sort(-top, axis=1)
    return [float(np.median(top[:, r - 1])) for r in ranks]


def calibrate(
    model: FaceDistractors,
    probes: np.ndarray,
    held_out: np.ndarray,
    *,
    sample: int = 20_000,
    grid: Sequence[float] = GAMMA_GRID,
    neighbours: int = NEIGHBOUR_SAMPLE,
) -> tuple[FaceDistractors, list[dict[str, float]]]:
    """The model with the Gaussian share that best matches real non-mates, and one row per
    share tried.

    Three things are compared, each with real faces: the distractors' scores against
    ``probes`` (with the probes' scores against ``held_out``: one image each of people
    neither probes nor sources) and among themselves across identities (with ``held_out``
    among themselves), at :data:`QUANTILES`; and how close the nearest and the 10th nearest
    of ``neighbours`` distractors are to a held-out real face and to a fresh distractor
    (a graph or cluster index sees real faces as outliers when distractors crowd each other
    more than real faces). A small share makes the first tail heavier (more real
    structure) but the other two worse (distractors sharing a source image are alike); the
    share with the smallest largest gap wins."""
    real_probe = np.quantile(probes @ held_out.T, QUANTILES)
    limit = min(held_out.shape[0], 3000)
    real_self = np.quantile(_different(held_out[:limit] @ held_out[:limit].T, None), QUANTILES)
    queries = held_out[: min(held_out.shape[0], 1000)]
    rows: list[dict[str, float]] = []
    best, best_gap = model, np.inf
    for gamma in grid:
        trial = model.with_gamma(gamma)
        batch = trial.chunk(10_000_019, sample)  # chunk numbers galleries never reach
        probe_gap = np.abs(np.quantile(probes @ batch.vectors.T, QUANTILES) - real_probe).max()
        part = batch.vectors[:limit]
        own = _different(part @ part.T, batch.identity[:limit])
        self_gap = np.abs(np.quantile(own, QUANTILES) - real_self).max()
        crowd = trial.chunk(10_000_021, neighbours).vectors
        fresh = trial.chunk(10_000_023, queries.shape[0]).vectors
        near_real, near_fake = nearest(queries, crowd), nearest(fresh, crowd)
        nn_gap = max(abs(a - b) for a, b in zip(near_real, near_fake, strict=True))
        gap = float(max(probe_gap, self_gap, nn_gap))
        rows.append({
            "gamma": float(gamma), "probe_quantile_gap": float(probe_gap),
            "self_quantile_gap": float(self_gap), "neighbour_gap": float(nn_gap),
            "nearest_real": near_real[0], "nearest_distractor": near_fake[0],
        })  # fmt: skip
        if gap < best_gap:
            best, best_gap = trial, gap
    return best, rows
