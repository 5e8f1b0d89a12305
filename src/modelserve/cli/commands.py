"""The ``modelserve`` command line: train, serve, predict, and inspect the model store.

Every command calls the same core functions the HTTP app uses; settings come from the one
:class:`~modelserve.core.settings.Settings` class (environment variables), overridden by flags.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import json
import logging
import logging.config
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import orjson
import typer
from pydantic import ValidationError

from modelserve import __version__
from modelserve.core.errors import ModelServeError
from modelserve.core.lifecycle import SUPERVISOR_ENV, held, remove_stale
from modelserve.core.manifest import PLOT_FILE
from modelserve.core.registry import ModelRegistry, load_policy, open_store
from modelserve.core.settings import Settings, settings_environment
from modelserve.core.signing import generate_keys, load_signing_key
from modelserve.core.store import parse_version
from modelserve.dataplane.plane import prepare_native
from modelserve.ops.gc import paused_gc
from modelserve.ops.logs import logging_config
from modelserve.ops.metrics import MULTIPROC_ENV
from modelserve.protocol import native
from modelserve.training.train import (
    ESTIMATORS,
    TrainConfig,
    TrainResult,
    estimator_kind,
    import_pickle,
    train,
)

if TYPE_CHECKING:
    import uvicorn
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from rich.console import Console

logger = logging.getLogger(__name__)

app = typer.Typer(
    name="modelserve",
    help="Train scikit-learn models into a verified store and serve them over HTTP.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Inspect the model store.", no_args_is_help=True)
app.add_typer(models_app, name="models")
keys_app = typer.Typer(help="Ed25519 keys that sign and verify manifests.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@functools.cache
def _err() -> Console:
    """Messages for people, on stderr (rich is imported only when there is one to write)."""
    from rich.console import Console  # noqa: PLC0415 - `serve` starts faster without rich

    return Console(stderr=True)


def escape(text: str) -> str:
    """``text`` with any rich markup in it escaped."""
    from rich.markup import escape as rich_escape  # noqa: PLC0415

    return rich_escape(text)


SigningKeyOption = Annotated[
    Path | None,
    typer.Option(help="Sign the manifest with this Ed25519 key [env: MODELSERVE_SIGNING_KEY]."),
]
StoreOption = Annotated[
    Path | None,
    typer.Option(
        "--store", help="Model store directory [env: MODELSERVE_STORE, default ./models]."
    ),
]


def _version_option(text: str) -> int:
    version = parse_version(text)
    if version is None or version < 1:
        raise typer.BadParameter(f"{text!r}: a version is written in ASCII digits, from 1")
    return version


VersionOption = Annotated[
    int | None,
    typer.Option(parser=_version_option, metavar="INTEGER", help="Version [default: newest]."),
]


METRICS_DIR_PREFIX = "modelserve-metrics-"
"""The multiprocess metrics directories ``serve --workers N`` makes in the temp folder."""

BATCH_SUFFIXES = frozenset({".csv", ".parquet", ".pq"})
"""--input suffixes that `modelserve predict` scores as files (see modelserve.dataplane.scoring)."""


class Engine(enum.StrEnum):
    uvicorn = "uvicorn"
    ray = "ray"


class Format(enum.StrEnum):
    skops = "skops"
    pickle = "pickle"


def _fail(message: str, code: int = 1) -> NoReturn:
    # escape(): a message may hold brackets ("modelserve[ray]") that are not rich markup.
    _err().print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _settings(**overrides: Any) -> Settings:
    """Settings from the environment, with the flags that were given on top."""
    try:
        return Settings(**{key: value for key, value in overrides.items() if value is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        _fail(f"invalid settings: {problems}")


def _echo_json(value: Any) -> None:
    typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))


def _report(result: TrainResult) -> None:
    manifest = result.manifest
    typer.echo(f"name:    {manifest.name}")
    typer.echo(f"version: {manifest.version}")
    typer.echo(f"path:    {result.path}")
    typer.echo(f"model:   {manifest.estimator.class_name} ({manifest.format})")
    typer.echo("metrics: " + ", ".join(f"{k}={v:.6g}" for k, v in manifest.metrics.items()))
    if PLOT_FILE in manifest.attachments:
        typer.echo(f"report:  {result.path / PLOT_FILE}")


def _signing_key(settings: Settings) -> Ed25519PrivateKey | None:
    if settings.signing_key is None:
        return None
    try:
        return load_signing_key(settings.signing_key)
    except ModelServeError as exc:
        _fail(exc.message)


def _train(config: TrainConfig, settings: Settings) -> TrainResult:
    key = _signing_key(settings)
    try:
        kind = estimator_kind(config.estimator)
        with _err().status(f"Training {kind.description} ({config.name})…", spinner="dots"):
            return train(config, open_store(settings), key)
    except ModelServeError as exc:
        _fail(exc.message)


@app.command("train")
def train_command(
    name: Annotated[str, typer.Option(help="Model name in the store.")] = "default",
    estimator: Annotated[str, typer.Option(help=f"Estimator: {', '.join(ESTIMATORS)}.")] = "linear",
    csv: Annotated[
        Path | None, typer.Option(help="Train on this CSV file (header row; numeric features).")
    ] = None,
    target: Annotated[str | None, typer.Option(help="Target column of --csv.")] = None,
    samples: Annotated[int, typer.Option(help="Synthetic data: number of rows.")] = 1000,
    features: Annotated[int, typer.Option(help="Synthetic data: number of features.")] = 10,
    noise: Annotated[float, typer.Option(help="Synthetic regression data: noise.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Random seed for data, split and estimator.")] = 42,
    test_size: Annotated[float, typer.Option(help="Held-out fraction for the metrics.")] = 0.2,
    format: Annotated[
        Format, typer.Option(help="Artifact format; pickle needs MODELSERVE_ALLOW_PICKLE to serve.")
    ] = Format.skops,
    signing_key: SigningKeyOption = None,
    store: StoreOption = None,
) -> None:
    """Fit a model and publish it as the next version in the store."""
    settings = _settings(store=store, signing_key=signing_key)
    config = TrainConfig(
        name=name,
        estimator=estimator,
        samples=samples,
        features=features,
        noise=noise,
        seed=seed,
        test_size=test_size,
        csv=csv,
        target=target,
        format=format.value,
    )
    _report(_train(config, settings))
    if format is Format.pickle and not settings.allow_pickle:
        _err().print(
            "note: the server loads pickle artifacts only with MODELSERVE_ALLOW_PICKLE=true",
            highlight=False,
        )


@app.command("serve")
def serve_command(
    host: Annotated[str | None, typer.Option(help="Bind address [env: MODELSERVE_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env: MODELSERVE_PORT].")] = None,
    store: StoreOption = None,
    max_rows: Annotated[
        int | None, typer.Option(help="Most rows per request [env: MODELSERVE_MAX_ROWS].")
    ] = None,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(help="Largest request body in bytes [env: MODELSERVE_MAX_BODY_BYTES]."),
    ] = None,
    allow_pickle: Annotated[
        bool | None,
        typer.Option(
            "--allow-pickle/--no-allow-pickle",
            help="Load pickle artifacts [env: MODELSERVE_ALLOW_PICKLE].",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes, one per core [env: MODELSERVE_WORKERS]."),
    ] = None,
    poll_interval: Annotated[
        float | None,
        typer.Option(help="Seconds between store scans; 0 = off [env: MODELSERVE_POLL_INTERVAL]."),
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="Log level [env: MODELSERVE_LOG_LEVEL].")
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(help="json, text, or auto (text on a terminal) [env: MODELSERVE_LOG_FORMAT]."),
    ] = None,
    train_if_empty: Annotated[
        bool, typer.Option(help="Train the default model first when the store is empty.")
    ] = True,
    engine: Annotated[
        Engine,
        typer.Option(
            help="uvicorn (this machine) or ray (a Ray Serve deployment; modelserve[ray])."
        ),
    ] = Engine.uvicorn,
    replicas: Annotated[
        int, typer.Option(min=1, help="--engine ray: replicas (the minimum when autoscaling).")
    ] = 1,
    max_replicas: Annotated[
        int | None,
        typer.Option(min=1, help="--engine ray: autoscale up to this many replicas."),
    ] = None,
    replica_cpus: Annotated[
        float, typer.Option(min=0.0, help="--engine ray: CPUs reserved per replica.")
    ] = 1.0,
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="--engine ray: cluster to join (auto, ray://host:10001); default: a local one."
        ),
    ] = None,
) -> None:
    """Serve every model in the store over HTTP."""
    with paused_gc():  # see modelserve.ops.gc
        import uvicorn  # noqa: PLC0415 - only this command needs the server

        from modelserve.http.runtime import Runtime  # noqa: PLC0415
        from modelserve.http.staged import StagedApp  # noqa: PLC0415

    settings = _settings(
        host=host,
        port=port,
        store=store,
        max_rows=max_rows,
        max_body_bytes=max_body_bytes,
        allow_pickle=allow_pickle,
        poll_interval=poll_interval,
        workers=workers,
        log_level=log_level,
        log_format=log_format,
    )
    log_config = logging_config(settings.log_level, settings.log_format)
    logging.config.dictConfig(log_config)
    logging.captureWarnings(True)  # a library's warning is a log line too, not bare stderr
    model_store = open_store(settings)
    model_store.remove_stale_temporaries()
    if train_if_empty and model_store.is_empty() and not settings.store.is_file():
        logger.info("the store %s is empty: training the default model", settings.store)
        _report(_train(TrainConfig(name=settings.default_model), settings))
    problem = model_store.problem()
    if problem is not None:
        _fail(problem)
    try:
        load_policy(settings)  # a verify key that cannot be used stops here, in one line
    except ModelServeError as exc:
        _fail(exc.message)
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal; a drained,
    # orderly stop is a success, so the process exits 0 instead of dying by the signal.
    signal.signal(signal.SIGTERM, _exit_after_graceful_shutdown)
    if engine is Engine.ray:
        from modelserve.cli import ray_engine  # noqa: PLC0415

        options = ray_engine.RayOptions(
            address=ray_address,
            replicas=replicas,
            max_replicas=max_replicas,
            replica_cpus=replica_cpus,
        )
        try:
            ray_engine.run(settings, options)
        except ModelServeError as exc:
            _fail(exc.message)
        return
    if settings.workers > 1:
        _serve_workers(settings, log_config)
        return
    # Listening starts with the fast lane once the models are loaded; the FastAPI app is built
    # in the background and answers everything else (modelserve.http.staged).
    with paused_gc():
        staged = StagedApp(Runtime(settings), on_failure=lambda: _stop(server))
    config = uvicorn.Config(staged, **_uvicorn_options(settings, log_config))
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if staged.failed:
        _fail("the server stopped: it could not build its HTTP app (traceback above)")
    if not server.started:
        raise SystemExit(3)  # uvicorn's own exit status when start-up fails


def _serve_workers(settings: Settings, log_config: dict[str, Any]) -> None:
    """Run ``settings.workers`` processes on one port.

    Each worker builds its own app from the environment: its own registry, store watcher and
    readiness, exactly as a single-process server (listening before its FastAPI app is built).
    Metrics go to a fresh multiprocess directory (unless PROMETHEUS_MULTIPROC_DIR names one),
    so a scrape on any worker reports the whole server's totals; it is removed when the server
    stops, and, if the server was killed, by the next one to start. Workers stop when this
    process dies, however it dies (:func:`modelserve.core.lifecycle.die_with_parent`).
    """
    import uvicorn  # noqa: PLC0415

    os.environ.update(settings_environment(settings))
    os.environ[SUPERVISOR_ENV] = str(os.getpid())
    owned = None
    stack = contextlib.ExitStack()
    if not os.environ.get(MULTIPROC_ENV):
        remove_stale(Path(tempfile.gettempdir()), METRICS_DIR_PREFIX, older_than=2.0)
        owned = tempfile.mkdtemp(prefix=METRICS_DIR_PREFIX)
        stack.enter_context(held(Path(owned)))  # while this supervisor lives
        os.environ[MULTIPROC_ENV] = owned
    try:
        uvicorn.run(
            "modelserve.http.staged:create_staged_app",
            factory=True,
            workers=settings.workers,
            **_uvicorn_options(settings, log_config),
        )
    finally:
        if owned is not None:
            shutil.rmtree(owned, ignore_errors=True)
        stack.close()


def _uvicorn_options(settings: Settings, log_config: dict[str, Any]) -> dict[str, Any]:
    """What uvicorn serves with, one process or several."""
    from modelserve.http.connections import PROTOCOL  # noqa: PLC0415 - imports uvicorn

    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "log_config": log_config,
        "access_log": False,  # modelserve's access log replaces uvicorn's
        "ws": "none",  # no WebSocket routes: skips importing a WebSocket library at start
        "http": PROTOCOL,  # uvicorn's httptools, its connections under the header deadline
        "timeout_graceful_shutdown": settings.drain_timeout,
    }


@app.command("predict")
def predict_command(
    input: Annotated[
        str,
        typer.Option(
            "--input",
            "-i",
            help=(
                "A .csv or .parquet file to score in chunks (header row = feature names), or "
                'JSON (file, or - for stdin): {"instances": [...]} or a bare list of rows.'
            ),
        ),
    ] = "-",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="CSV file for the predictions of a .csv/.parquet input."
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model name [default: the default model].")
    ] = None,
    version: VersionOption = None,
    probabilities: Annotated[
        bool, typer.Option(help="Also print class probabilities (classifiers).")
    ] = False,
    chunk_rows: Annotated[
        int, typer.Option(min=1, help="Rows predicted at a time for a .csv/.parquet input.")
    ] = 65_536,
    progress: Annotated[
        bool, typer.Option(help="Show a progress bar while scoring a file (on a terminal).")
    ] = True,
    store: StoreOption = None,
) -> None:
    """Predict rows with a verified model from the store, without a server.

    A .csv or .parquet --input is streamed in chunks through the same validation as the API,
    and the predictions are written as CSV to --output (standard output when omitted).
    """
    settings = _settings(store=store)
    name = model or settings.default_model
    if input != "-" and Path(input).suffix.lower() in BATCH_SUFFIXES:
        _score_file(
            settings, name, version, Path(input), output, probabilities, chunk_rows, progress
        )
        return
    if output is not None:
        _fail("--output is for a .csv or .parquet --input; JSON predictions go to stdout")
    raw = sys.stdin.buffer.read() if input == "-" else _read(Path(input))
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        _fail(f"input is not valid JSON: {exc}")
    if isinstance(document, list):
        document = {"instances": document}
    if probabilities and isinstance(document, dict):
        document["return_probabilities"] = True
    try:
        predictor = ModelRegistry(settings).load_predictor(name, version)
        prepared = prepare_native(predictor, orjson.dumps(document))
        prediction = predictor.predict_batch(prepared.batch)
    except ModelServeError as exc:
        for problem in exc.problems[1:]:
            _err().print(f"  {escape(problem.msg)}", highlight=False)
        _fail(exc.message)
    encoded = native.encode(predictor.name, predictor.version, prediction, indent=True)
    typer.echo(encoded.body)


def _score_file(
    settings: Settings,
    name: str,
    version: int | None,
    source: Path,
    target: Path | None,
    probabilities: bool,
    chunk_rows: int,
    show_progress: bool,
) -> None:
    # pyarrow takes ~0.4 s to import: only file scoring pays for it, never `serve`.
    from modelserve.dataplane.scoring import count_rows, score_file  # noqa: PLC0415

    if not source.is_file():
        _fail(f"cannot read {source}: no such file")
    try:
        registry = ModelRegistry(settings.model_copy(update={"max_rows": chunk_rows}))
        predictor = registry.load_predictor(name, version)
        total = count_rows(source)
    except ModelServeError as exc:
        _fail(exc.message)
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        _fail(f"cannot read {source}: {exc}")
    from rich.progress import (  # noqa: PLC0415 - only this command draws a bar
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=_err(), disable=not show_progress, transient=True) as bar:
        task = bar.add_task(f"{name} v{predictor.version}", total=total)
        try:
            result = score_file(
                predictor,
                source,
                target,
                chunk_rows=chunk_rows,
                probabilities=probabilities,
                progress=lambda rows: bar.advance(task, rows),
                stdout=sys.stdout.buffer,
            )
        except ModelServeError as exc:
            _fail(f"{source}: {exc.message}; no predictions were written")
        except (OSError, ValueError) as exc:
            _fail(f"{source}: {exc}; no predictions were written")
    if result.ignored_columns:
        _err().print(
            "ignored columns: " + escape(", ".join(result.ignored_columns)), highlight=False
        )
    where = "stdout" if target is None else str(target)
    _err().print(
        f"{result.rows:,} rows scored with {escape(name)} v{predictor.version} -> "
        f"{escape(where)} in "
        f"{result.seconds:.2f} s ({result.rows_per_second:,.0f} rows/s)",
        highlight=False,
        soft_wrap=True,
    )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror or exc}")


@models_app.command("list")
def models_list(store: StoreOption = None) -> None:
    """List every model in the store with its versions."""
    settings = _settings(store=store)
    model_store = open_store(settings)
    names = model_store.list_models()
    if not names:
        typer.echo(f"no models in {settings.store}")
        return
    for name in names:
        versions = model_store.list_versions(name)
        try:
            manifest = model_store.read_manifest(name, versions[-1])
            about = f"{manifest.estimator.class_name.rsplit('.', 1)[-1]}, " + ", ".join(
                f"{k}={v:.4g}" for k, v in manifest.metrics.items()
            )
        except ModelServeError as exc:
            about = f"newest manifest unreadable: {exc.message}"
        typer.echo(f"{name}  versions {', '.join(map(str, versions))}  ({about})")


@models_app.command("show")
def models_show(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: VersionOption = None,
    verify: Annotated[
        bool, typer.Option(help="Also verify and load the model file, as the server would.")
    ] = True,
    store: StoreOption = None,
) -> None:
    """Print one version's manifest; with --verify (default) check it loads as the server would."""
    settings = _settings(store=store)
    try:
        registry = ModelRegistry(settings)
        manifest = registry.store.read_manifest(name, version)
        if verify:
            registry.load_predictor(name, manifest.version)
    except ModelServeError as exc:
        _fail(exc.message)
    typer.echo(json.dumps(manifest.model_dump(mode="json"), indent=2))
    if verify:
        _err().print(f"verified: {name} v{manifest.version} loads and matches its manifest")


@app.command("import")
def import_command(
    path: Annotated[
        Path, typer.Argument(help="A fitted scikit-learn estimator saved with pickle.")
    ],
    name: Annotated[str, typer.Option(help="Model name in the store.")],
    trust_pickle: Annotated[
        bool,
        typer.Option(
            "--trust-pickle", help="Unpickle the file: this runs its code, so trust its source."
        ),
    ] = False,
    feature_names: Annotated[
        str | None,
        typer.Option(help="Comma-separated feature names [default: the estimator's, or x0, x1…]."),
    ] = None,
    format: Annotated[
        Format, typer.Option(help="Publish as skops (re-serialized) or keep the pickle bytes.")
    ] = Format.skops,
    signing_key: SigningKeyOption = None,
    store: StoreOption = None,
) -> None:
    """Publish an estimator pickled elsewhere; its sha256 is recorded in the manifest."""
    settings = _settings(store=store, signing_key=signing_key)
    key = _signing_key(settings)
    names = [n.strip() for n in feature_names.split(",")] if feature_names else None
    try:
        result = import_pickle(
            path,
            name,
            open_store(settings),
            trust_pickle=trust_pickle,
            feature_names=names,
            fmt=format.value,
            signing_key=key,
        )
    except ModelServeError as exc:
        _fail(exc.message)
    _report(result)
    typer.echo(f"source:  {path} (sha256 {result.manifest.training_data.sha256})")


@keys_app.command("generate")
def keys_generate(
    out: Annotated[Path, typer.Option(help="Directory for signing-key.pem and verify-key.pem.")],
) -> None:
    """Create an Ed25519 key pair: signing-key.pem for training, verify-key.pem for servers."""
    try:
        private, public = generate_keys(out)
    except ModelServeError as exc:
        _fail(exc.message)
    typer.echo(f"signing key: {private}  (train with MODELSERVE_SIGNING_KEY={private})")
    typer.echo(f"verify key:  {public}  (serve with MODELSERVE_VERIFY_KEY={public})")


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        typer.echo(f"modelserve {__version__}")
        raise typer.Exit


def _stop(server: uvicorn.Server) -> None:
    """Ask ``server`` to shut down gracefully (from any thread: its loop polls the flag)."""
    server.should_exit = True


def _exit_after_graceful_shutdown(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


train_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
train_app.command()(train_command)


def main() -> None:
    """Console script entry point."""
    app()
