"""``faceledger bench bulk``: the folder jobs people run first, against face_recognition's CLI.

The protocol, on LFW (its images folder, people sorted by name): the first ``n / 2`` people
with two or more photos are enrolled from their first photo; the probes are their second
photos plus the first photo of as many people with a single photo (strangers), ``n`` in
all. Every program is run as a user would run it, as a separate process with its own
start-up and model loading, on the same files, in the same run:

- ``faceledger enroll`` of the known people, then ``faceledger identify --json`` of the
  probes, per profile, with ``--workers``;
- ``face_recognition --cpus N known/ probes/`` (known photos named after the person);
- the engine alone (``bench speed``'s measure: read, detect, align, embed, no matching,
  no ledger), in this process, for the ratio the command keeps of it.

Correct name: a probe of an enrolled person named as that person; wrong name: any probe
named as someone else (a stranger named at all, or an enrolled person as another).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from faceledger.errors import ConfigError

Say = Callable[[str], None]


@dataclass(frozen=True)
class Probe:
    path: Path
    person: str | None
    """Who it shows when they are enrolled (None: a stranger)."""


@dataclass(frozen=True)
class Job:
    known: tuple[tuple[str, Path], ...]
    probes: tuple[Probe, ...]


@dataclass
class Run:
    """One program's pass over the probes."""

    program: str
    workers: int
    enroll_s: float | None
    identify_s: float
    images: int
    correct: int = 0
    wrong: int = 0
    failed: int = 0
    rc: int = 0
    note: str = ""

    @property
    def images_per_s(self) -> float:
        return self.images / self.identify_s if self.identify_s > 0 else 0.0

    enrolled: int = 0
    """Photos given to enroll."""

    @property
    def enroll_per_s(self) -> float | None:
        return self.enrolled / self.enroll_s if self.enroll_s else None

    def as_json(self) -> dict[str, object]:
        body = asdict(self)
        body["images_per_s"] = round(self.images_per_s, 2)
        body["enroll_per_s"] = round(self.enroll_per_s, 2) if self.enroll_per_s else None
        return body


@dataclass
class Result:
    images: int
    known: int
    cores: int
    runs: list[Run] = field(default_factory=list)
    engine_alone: dict[str, float] = field(default_factory=dict)
    """profile -> images/s of the models alone (bench speed's measure, same workers)."""

    def as_json(self) -> dict[str, object]:
        return {
            "images": self.images,
            "known": self.known,
            "cores": self.cores,
            "engine_alone_images_per_s": self.engine_alone,
            "runs": [r.as_json() for r in self.runs],
        }


def pick(data: Path, n: int) -> Job:
    """The protocol's known people and probes (see the module docstring)."""
    root = data / "images"
    if not root.is_dir():
        raise ConfigError(f"{data}: no images/ folder (is --data the LFW folder?)")
    if n < 2 or n % 2:
        raise ConfigError(f"--images {n}: give an even number of at least 2")
    many: list[tuple[str, list[Path]]] = []
    single: list[Path] = []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        photos = sorted(person.glob("*.jpg"))
        if len(photos) >= 2:
            many.append((person.name, photos))
        elif photos:
            single.append(photos[0])
    half = n // 2
    if len(many) < half or len(single) < half:
        raise ConfigError(
            f"{data}: {len(many)} people with several photos and {len(single)} with one; "
            f"--images {n} needs {half} of each"
        )
    known = tuple((name, photos[0]) for name, photos in many[:half])
    probes = tuple(Probe(photos[1], name) for name, photos in many[:half])
    probes += tuple(Probe(path, None) for path in single[:half])
    return Job(known, probes)


def lay_out(job: Job, folder: Path) -> tuple[Path, Path, Path]:
    """Symlinks: known/<person>/<photo> (faceledger), known-flat/<person>.jpg
    (face_recognition names a person after the file), probes/<photo>."""
    known, flat, probes = folder / "known", folder / "known-flat", folder / "probes"
    for name, path in job.known:
        (known / name).mkdir(parents=True, exist_ok=True)
        (known / name / path.name).symlink_to(path.resolve())
        flat.mkdir(exist_ok=True)
        (flat / f"{name}.jpg").symlink_to(path.resolve())
    probes.mkdir()
    for probe in job.probes:
        (probes / probe.path.name).symlink_to(probe.path.resolve())
    return known, flat, probes


def _timed(argv: Sequence[str], env: dict[str, str], timeout: float) -> tuple[float, str, int]:
    started = time.perf_counter()
    try:
        done = subprocess.run(
            list(argv), env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return time.perf_counter() - started, "", 124
    return time.perf_counter() - started, done.stdout + "\n" + done.stderr, done.returncode


def _score(run: Run, named: dict[str, str | None], job: Job) -> None:
    """Count correct and wrong names (``named``: probe file name -> the name given)."""
    for probe in job.probes:
        if probe.path.name not in named:
            run.failed += 1
            continue
        given = named[probe.path.name]
        if given is None:
            continue
        if given == probe.person:
            run.correct += 1
        else:
            run.wrong += 1


def faceledger_cli() -> list[str]:
    return [sys.executable, "-m", "faceledger"]


def run_faceledger(
    profile: str, workers: int, job: Job, *, dirs: tuple[Path, Path, Path], folder: Path,
    env: dict[str, str], timeout: float,
) -> Run:  # fmt: skip
    known, _, probes = dirs
    db = folder / f"{profile}-{workers}.db"
    common = ["--profile", profile, "--db", str(db), "--workers", str(workers)]
    enroll_s, log, rc = _timed(
        [*faceledger_cli(), "enroll", str(known), "--basis", "bench bulk", *common], env, timeout
    )
    if rc not in (0, 1):  # 1: some photo had no usable face, reported and skipped
        return Run(f"faceledger {profile}", workers, enroll_s, 0.0, 0, rc=rc, note=log[-400:])
    identify_s, output, rc = _timed(
        [*faceledger_cli(), "identify", str(probes), "--json", *common], env, timeout
    )
    run = Run(f"faceledger {profile}", workers, enroll_s, identify_s, len(job.probes), rc=rc,
              enrolled=len(job.known))  # fmt: skip
    named: dict[str, str | None] = {}
    for line in output.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict) or "image" not in row or row.get("error"):
            continue
        faces = row.get("faces") or []  # largest first: the probe's own face
        named[Path(str(row["image"])).name] = faces[0].get("subject") if faces else None
    _score(run, named, job)
    return run


def run_face_recognition(
    workers: int, job: Job, dirs: tuple[Path, Path, Path], env: dict[str, str], timeout: float
) -> Run:
    exe = shutil.which("face_recognition", path=os.path.dirname(sys.executable)) or shutil.which(
        "face_recognition"
    )
    if exe is None:
        raise ConfigError(
            "face_recognition's CLI is not installed: pip install --no-deps "
            "face_recognition==1.3.0 (or pass --no-peer)"
        )
    _, flat, probes = dirs
    seconds, output, rc = _timed(
        [exe, "--cpus", str(workers), str(flat), str(probes)], env, timeout
    )
    run = Run("face_recognition CLI", workers, None, seconds, len(job.probes), rc=rc)
    named: dict[str, str | None] = {}
    for line in output.splitlines():
        path, sep, name = line.rpartition(",")
        if not sep or not path:
            continue
        key = Path(path).name
        given = None if name in ("unknown_person", "no_persons_found") else name
        if named.get(key) is None:  # the first named face of the image counts
            named[key] = given
    _score(run, named, job)
    return run


def engine_alone(profile: str, job: Job, workers: int, env: dict[str, str]) -> float:
    """Images per second of the models alone (read, detect, align, embed), same photos."""
    from faceledger.bench.speed import measure
    from faceledger.config import load_config
    from faceledger.engine import Engine

    mirror = env.get("FACELEDGER_MODEL_MIRROR")
    config = load_config(
        profile=profile, threads=1, model_mirror=Path(mirror) if mirror else None,
        offline=env.get("FACELEDGER_OFFLINE") == "1" or None,
    )  # fmt: skip
    with Engine(config) as engine:
        return measure(engine, [p.path for p in job.probes], workers=workers).images_per_s


def run(
    data: Path,
    images: int,
    *,
    profiles: Sequence[str],
    workers: int,
    peer: bool,
    env: dict[str, str],
    say: Say,
    timeout: float = 1800.0,
) -> Result:
    job = pick(data, images)
    result = Result(len(job.probes), len(job.known), os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="faceledger-bulk-") as tmp:
        folder = Path(tmp)
        dirs = lay_out(job, folder)
        for profile in profiles:
            say(f"{profile}: the models alone on {len(job.probes)} photos, {workers} workers ...")
            result.engine_alone[profile] = round(engine_alone(profile, job, workers, env), 2)
            say(f"{profile}: faceledger enroll {len(job.known)}, identify {len(job.probes)} ...")
            result.runs.append(
                run_faceledger(
                    profile, workers, job, dirs=dirs, folder=folder, env=env, timeout=timeout
                )
            )
        if peer:
            say(f"face_recognition --cpus {workers} on the same photos ...")
            result.runs.append(run_face_recognition(workers, job, dirs, env, timeout))
    return result
