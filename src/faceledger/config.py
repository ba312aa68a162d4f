"""One typed configuration tree, validated once at the edge and passed down.

Values come from (highest first): keyword arguments / CLI flags, environment variables
(``FACELEDGER_PROFILE``, ``FACELEDGER_DB``, ``FACELEDGER_MODEL_MIRROR``,
``FACELEDGER_OFFLINE``, ``FACELEDGER_THREADS`` ...), a TOML file named by
``FACELEDGER_CONFIG``, then the defaults below.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from faceledger.db.url import parse_db
from faceledger.errors import ConfigError
from faceledger.faces.track import TrackerConfig
from faceledger.images import DECODE_BUDGET_TOTAL, MAX_DECODE_BYTES
from faceledger.models.catalog import PROFILES

Strictness = Literal["lenient", "balanced", "strict"]


def parse_duration(
    text: str | float | timedelta | None, what: str = "duration"
) -> timedelta | None:
    """'90s', '30m', '12h', '7d' (or plain seconds) -> timedelta; None stays None."""
    if text is None or isinstance(text, timedelta):
        return text
    text = str(text).strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        seconds = float(value) * units[unit]
    except ValueError:
        raise ConfigError(f"{what} {text!r}: give a duration like 90s, 30m, 12h or 7d") from None
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigError(f"{what} {text!r}: the duration must be positive and finite")
    return timedelta(seconds=seconds)


def _duration(value: Any) -> Any:
    try:
        return parse_duration(value)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


Duration = Annotated[timedelta, BeforeValidator(_duration)]


def default_db() -> Path:
    return Path(platformdirs.user_data_dir("faceledger")) / "gallery.db"


def default_cache() -> Path:
    return Path(platformdirs.user_cache_dir("faceledger")) / "models"


IndexKind = Literal["auto", "exact", "flat", "pq", "hnsw", "ivf", "ivfpq"]


class IndexConfig(BaseModel):
    """The vector index searches run over (``[index]`` in the TOML file,
    ``FACELEDGER_INDEX__KIND`` and so on in the environment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: IndexKind = Field(
        "auto",
        description="exact (numpy), flat (FAISS, exact), pq (4-bit PQ scan of every vector, "
        "re-ranked exactly), hnsw, ivf, ivfpq; auto picks by gallery size: flat below "
        "auto_approximate_from templates, then pq, ivfpq from auto_pq_from",
    )
    auto_approximate_from: int = Field(200_000, ge=1)
    auto_pq_from: int = Field(5_000_000, ge=1)
    hnsw_m: int = Field(32, ge=4, le=128, description="HNSW links per vector")
    hnsw_ef_construction: int = Field(80, ge=8, le=2048)
    hnsw_ef_search: int = Field(128, ge=1, le=4096, description="HNSW search breadth")
    ivf_nlist: int | None = Field(
        None, ge=1, description="IVF lists (default: 4 x sqrt(templates), at least 1)"
    )
    ivf_nprobe: int = Field(32, ge=1, description="IVF lists searched per query")
    pq_bytes: int = Field(64, ge=4, le=512, description="IVF-PQ code size per vector")
    pq_subquantizers: int | None = Field(
        None,
        ge=1,
        le=512,
        description="pq: 4-bit codes per vector, a divisor of the dimension (default: the "
        "largest divisor up to 64: 32 bytes for 512-d or 128-d vectors)",
    )
    pq_rerank: int = Field(
        512, ge=1, le=65536, description="pq: candidates per query re-scored exactly"
    )
    dir: Path | None = Field(
        None,
        description="where the persisted index is kept (default: beside a SQLite gallery; "
        "the user cache folder for a PostgreSQL one)",
    )
    persist: bool = Field(True, description="keep the index in a file and catch it up")


class NodeConfig(BaseModel):
    """A camera node (``faceledger node``; ``[node]`` in the TOML file,
    ``FACELEDGER_NODE__MAX_BATCH`` and so on in the environment): its shared inference
    scheduler, its cameras' queues and trackers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    detect_max_side: int = Field(
        640,
        ge=160,
        le=4096,
        description="camera frames are downscaled to this longest side for detection "
        "(720p: 640 finds faces from about 24 px up)",
    )
    workers: int = Field(
        0,
        ge=0,
        le=256,
        description="scheduler threads, each serving its share of the cameras (0: one per core)",
    )
    max_batch: int = Field(
        8, ge=1, le=1024, description="frames (of all cameras) detected in one batch"
    )
    max_wait: float = Field(
        0.02, ge=0.0, le=1.0, description="longest wait (s) for a batch to fill once a frame waits"
    )
    queue_size: int = Field(
        3,
        ge=1,
        le=64,
        description="detection ticks queued per camera (3 at 5 fps: 0.6 s of slack); when "
        "full the oldest is dropped",
    )
    decide_after: float = Field(
        1.0, ge=0.0, le=60.0, description="decide a track once followed this long (s)"
    )
    best: int = Field(5, ge=1, le=50, description="embed this many best frames per track")
    health_every: float = Field(
        5.0, gt=0.0, le=3600.0, description="seconds between health reports per camera"
    )
    reload_every: float = Field(
        2.0, gt=0.0, le=600.0, description="seconds between reads of the camera records"
    )
    backoff: tuple[float, float] = Field(
        (0.5, 10.0), description="reconnect back-off (s): first wait, longest wait"
    )
    lease_ttl: float = Field(
        10.0,
        ge=2.0,
        le=600.0,
        description="with --nats: a camera lease not renewed for this long (s) is free; a "
        "node that dies loses its cameras to the others after it",
    )
    job_ack_wait: float = Field(
        60.0,
        ge=5.0,
        le=3600.0,
        description="with --nats: an archive job not acknowledged (or reported alive) for "
        "this long (s) goes to another node",
    )
    tracker: TrackerConfig = Field(
        default_factory=lambda: TrackerConfig(max_miss_s=0.5),
        description="how detections are linked into tracks (a track ends 0.5 s unseen, not "
        "1 s as in files: at a door, the next person soon after is a track of their own)",
    )

    @field_validator("backoff")
    @classmethod
    def _backoff(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1] <= 600:
            raise ValueError(f"backoff {value}: need 0 < first <= longest <= 600 s")
        return value


class Config(BaseSettings):
    """Everything an :class:`~faceledger.engine.Engine` needs to know."""

    model_config = SettingsConfigDict(
        env_prefix="FACELEDGER_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    profile: str = Field("embedded", description="model set: " + ", ".join(PROFILES))
    detector: str | None = Field(None, description="detector model (default: the profile's)")
    embedder: str | None = Field(None, description="embedder model (default: the profile's)")
    flip: bool | None = Field(
        None, description="also embed the mirrored face (default: the profile's choice)"
    )
    db: str = Field(
        default_factory=lambda: str(default_db()),
        description="gallery database: a SQLite file, or postgresql://user@host:port/name",
    )
    db_busy_timeout: float = Field(
        5.0, gt=0, le=600, description="seconds a write waits for another writer's lock"
    )
    model_mirror: Path | None = Field(None, description="folder searched for model files")
    model_cache: Path = Field(default_factory=default_cache, description="download cache")
    model_paths: dict[str, Path] = Field(
        default_factory=dict, description="model name -> folder holding its files"
    )
    offline: bool = Field(False, description="never download models")
    threads: int = Field(
        1,
        ge=0,
        le=256,
        description="inference threads per model call (0 = all cores); 1 measured fastest "
        "(more spin the other cores for little gain: bulk commands use a worker per core)",
    )
    providers: Annotated[
        list[str],
        NoDecode,  # the environment gives "A,B", not JSON
        BeforeValidator(
            lambda v: [p.strip() for p in v.split(",") if p.strip()] if isinstance(v, str) else v
        ),
    ] = Field(
        default_factory=lambda: ["CPUExecutionProvider"],
        description="onnxruntime execution providers, most preferred first (in "
        "FACELEDGER_PROVIDERS: comma-separated, e.g. CUDAExecutionProvider,CPUExecutionProvider); "
        "one not available here is skipped with a warning, and with none left the CPU is used",
    )
    strictness: Strictness = "balanced"
    max_pixels: int = Field(60_000_000, gt=0, description="refuse larger images (bombs)")
    max_bytes: int = Field(100_000_000, gt=0, description="refuse larger image files")
    max_decode_bytes: int = Field(
        MAX_DECODE_BYTES,
        gt=0,
        description="refuse images whose decoding takes more memory (bytes: the pixels in "
        "the file's mode, 16-bit and extra channels counted, plus the RGB copy)",
    )
    decode_budget_total: int = Field(
        DECODE_BUDGET_TOTAL,
        gt=0,
        description="memory all image decodes of one process may take at once (bytes); "
        "more wait their turn; at least max_decode_bytes",
    )
    detect_max_side: int = Field(
        1280, ge=160, description="images are downscaled to this longest side for detection"
    )
    min_face: int = Field(20, ge=8, description="ignore faces smaller than this (pixels)")
    min_enroll_face: int = Field(40, ge=8, description="enrollment needs faces this large")
    min_quality: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="raise the calibrated face-quality floor below which no one is named "
        "(a minimum can only be stricter than the floor: a lower value changes nothing)",
    )
    quality_minimums: dict[str, float] = Field(
        default_factory=dict,
        description='stricter minimums per quality factor, e.g. {"eye_distance": 32} '
        "(factors: eye_distance, sharpness, noise, pose, brightness, highlights, contrast, "
        "detector)",
    )
    det_threshold: float | None = Field(
        None, gt=0.0, lt=1.0, description="detector score threshold (default: the model card's)"
    )
    top_k: int = Field(1, ge=1, le=100)
    index: IndexConfig = Field(default_factory=IndexConfig)
    node: NodeConfig = Field(default_factory=NodeConfig)
    # the REST service (`faceledger serve`)
    host: str = Field("127.0.0.1", description="address `serve` binds to (only this machine)")
    port: int = Field(8765, ge=1, le=65535, description="port `serve` listens on")
    max_upload: int = Field(
        20_000_000, gt=0, description="largest request body the API accepts (bytes)"
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="browser origins allowed to call the API (none)"
    )
    # retention (`faceledger retention run`); the audit ledger itself is always kept
    keep_events: Duration = Field(
        timedelta(days=365), description="delete events (and their reviews) older than this"
    )
    keep_evidence: Duration = Field(
        timedelta(days=90), description="erase known subjects' face crops in events older than this"
    )
    keep_unknown: Duration | None = Field(
        None, description="keep strangers' face crops this long (default: never stored)"
    )

    @field_validator("db", mode="before")
    @classmethod
    def _database(cls, value: Any) -> Any:
        if isinstance(value, Path):
            value = str(value)
        if isinstance(value, str):
            try:
                parse_db(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str) -> str:
        if value not in PROFILES:
            raise ValueError(f"unknown profile {value!r}; choose one of: {', '.join(PROFILES)}")
        return value

    @field_validator("quality_minimums")
    @classmethod
    def _known_factors(cls, value: dict[str, float]) -> dict[str, float]:
        from faceledger.faces.quality import FACTOR_NAMES

        unknown = sorted(set(value) - set(FACTOR_NAMES))
        if unknown:
            raise ValueError(
                f"unknown quality factor {', '.join(unknown)}; known: {', '.join(FACTOR_NAMES)}"
            )
        return value

    @model_validator(mode="after")
    def _decode_budget_holds_one_decode(self) -> Config:
        if self.decode_budget_total < self.max_decode_bytes:
            raise ValueError(
                f"decode_budget_total ({self.decode_budget_total:,}) must be at least "
                f"max_decode_bytes ({self.max_decode_bytes:,}): one decode must fit"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml = os.environ.get("FACELEDGER_CONFIG")
        if toml:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml)))
        return tuple(sources)


def load_config(**overrides: Any) -> Config:
    """Build a :class:`Config`; ``None`` overrides are ignored. Errors become ConfigError."""
    given = {k: v for k, v in overrides.items() if v is not None}
    toml = os.environ.get("FACELEDGER_CONFIG")
    if toml and not Path(toml).is_file():
        raise ConfigError(f"FACELEDGER_CONFIG names {toml}, which is not a file")
    try:
        return Config(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
