"""Shared pieces of the CLI: the Typer apps, common options, error handling."""

from __future__ import annotations

import contextlib
import functools
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from faceledger import __version__
from faceledger.cli.render import err, out
from faceledger.config import Config, load_config
from faceledger.errors import ConfigError, FaceledgerError, ModelError, ModelMismatchError
from faceledger.images import collect_images
from faceledger.operations import Acting, Operations
from faceledger.text import shown

app = typer.Typer(
    name="faceledger",
    help=(
        "Accountable face recognition on your own machine.\n\n"
        "Enroll people (with a recorded legal basis) from photos, then identify or verify "
        "faces in new photos. Every answer carries a calibrated score and its threshold; "
        "'unknown' is a real answer. Models: --profile embedded (default, offline, dlib), "
        "fast (YuNet + EdgeFace-XXS) or accurate (SCRFD + EdgeFace-XS); the EdgeFace models "
        "are converted once with: faceledger models convert NAME."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
subjects_app = typer.Typer(help="List, show and remove enrolled subjects.", no_args_is_help=True)
models_app = typer.Typer(
    help="The model catalog: licences, files, where each was found.", no_args_is_help=True
)
gallery_app = typer.Typer(
    help="Gallery maintenance (re-embedding with another model).", no_args_is_help=True
)
audit_app = typer.Typer(
    help="The tamper-evident audit ledger: verify its hash chain, export it, list entries.",
    no_args_is_help=True,
)
keys_app = typer.Typer(
    help="API keys for the REST service: create (token shown once), list, revoke.",
    no_args_is_help=True,
)
watchlists_app = typer.Typer(
    help="Watch lists: groups of subjects whose matches wait for human review.",
    no_args_is_help=True,
)
events_app = typer.Typer(
    help="Stored events (video matches): list, show, review (confirm or reject).",
    no_args_is_help=True,
)
retention_app = typer.Typer(
    help="Delete events and face crops that outlived their configured lifetime.",
    no_args_is_help=True,
)


def _print_version(wanted: bool) -> None:
    if wanted:
        out.print(f"faceledger {__version__}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="print the version and exit",
        ),
    ] = False,
) -> None:
    pass


app.add_typer(subjects_app, name="subjects")
app.add_typer(models_app, name="models")
app.add_typer(gallery_app, name="gallery")
app.add_typer(audit_app, name="audit")
app.add_typer(keys_app, name="keys")
app.add_typer(watchlists_app, name="watchlists")
app.add_typer(events_app, name="events")
app.add_typer(retention_app, name="retention")

F = TypeVar("F", bound=Callable[..., Any])

Profile = Annotated[
    str | None,
    typer.Option(
        "--profile",
        "-p",
        help="embedded | fast | accurate  [env FACELEDGER_PROFILE; default embedded]",
    ),
]
Embedder = Annotated[
    str | None,
    typer.Option(
        "--embedder",
        help="embedder model instead of the profile's, e.g. mobilefacenet; "
        "see: faceledger models list  [env FACELEDGER_EMBEDDER]",
    ),
]
Detector = Annotated[
    str | None,
    typer.Option(
        "--detector",
        help="detector model instead of the profile's: dlib_hog, yunet, scrfd_2.5g, "
        "scrfd_500m, retinaface_mnet025  [env FACELEDGER_DETECTOR]",
    ),
]
Db = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="gallery database: a SQLite file, or postgresql://user@host:port/name  "
        "[env FACELEDGER_DB; default gallery.db in your data folder]",
    ),
]
Json = Annotated[
    bool, typer.Option("--json", help="machine-readable output: one JSON object per line")
]
Strictness = Annotated[
    str | None,
    typer.Option(
        "--strictness",
        help="lenient | balanced | strict: the threshold calibrated at FMR 1e-2 | 1e-3 | 1e-4",
    ),
]
Purpose = Annotated[
    str | None,
    typer.Option(
        "--purpose",
        help="why this search is run, recorded in the audit ledger (optional here; the REST "
        "API requires it)",
    ),
]
Case = Annotated[
    str | None,
    typer.Option("--case", help="case or ticket reference, recorded in the audit ledger"),
]
Offline = Annotated[bool, typer.Option("--offline", help="never download models")]


def handle_errors(func: F) -> F:
    """Turn faceledger errors into a message on stderr and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ConfigError, ModelError, ModelMismatchError) as exc:
            # usage and configuration: a bad option, a model file missing or not the one
            # its card pins, a gallery made with another embedder than the one chosen
            err.print(f"[red]error:[/] {shown(str(exc))}")
            raise typer.Exit(2) from None
        except FaceledgerError as exc:
            err.print(f"[red]error:[/] {shown(str(exc))}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def make_config(
    profile: str | None = None,
    db: str | Path | None = None,
    strictness: str | None = None,
    offline: bool = False,
    *,
    embedder: str | None = None,
    detector: str | None = None,
    min_quality: float | None = None,
) -> Config:
    return load_config(
        profile=profile,
        db=db,
        strictness=strictness,
        offline=offline or None,
        embedder=embedder,
        detector=detector,
        min_quality=min_quality,
    )


MinQuality = Annotated[
    float | None,
    typer.Option(
        "--min-quality",
        min=0.0,
        max=1.0,
        help="a stricter face-quality floor for this run (0-1): faces below it are answered "
        "'too poor to decide'. It can only raise the calibrated floor of the embedder "
        "(shown by faceledger models list); a lower value is refused",
        show_default=False,
    ),
]


@contextlib.contextmanager
def open_ops(
    db: str | None = None,
    *,
    create: bool = False,
    profile: str | None = None,
    strictness: str | None = None,
    offline: bool = False,
    embedder: str | None = None,
    detector: str | None = None,
    config: Config | None = None,
    min_quality: float | None = None,
) -> Iterator[Operations]:
    """The accountable operations over the gallery named by --db (or the configuration).
    A missing SQLite file is a usage error unless ``create`` (commands that only read
    leave no empty gallery behind)."""
    config = config or make_config(
        profile, db, strictness, offline, embedder=embedder, detector=detector,
        min_quality=min_quality,
    )  # fmt: skip
    with Operations(config, create=create) as ops:
        yield ops


def me(purpose: str | None = None, case: str | None = None) -> Acting:
    """The acting person at the command line: the operating-system user (role ``cli``);
    never a name given on the command line, so one person cannot act as two."""
    return Acting.os_user(purpose, case)


def gather(paths: list[Path]) -> list[Path]:
    files = list(collect_images(paths))
    if not files:
        given = ", ".join(str(p) for p in paths)
        raise ConfigError(f"no image files found in {given}")
    return files


def stop_on_signals(stop: Callable[[], None], doing: str = "stopping") -> Callable[[], None]:
    """SIGINT / SIGTERM call ``stop`` (saying so on stderr) instead of killing the
    process; returns a function restoring the previous handlers."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, _frame: object) -> None:
        err.print(f"[yellow]{signal.Signals(signum).name}: {doing}[/]")
        stop()

    for sig in previous:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
