"""The model store on local disk: ``<store>/<name>/<version>/{model file, manifest.json}``.

Publishing is atomic: a version is written into a temporary directory inside the model's own
directory (so on the same filesystem), fsynced, and renamed into place; a crash half-way leaves
only a ``.tmp-*`` directory that listing ignores. Versions are integers assigned by the store and
never overwritten.

Loading verifies before it deserializes: the manifest must be valid, the model file's sha256 must
match it, the scikit-learn version must match the running one (unless allowed), skops loads only
types on the server's own allowlist, and pickle loads only when allowed *and* after its hash
matched.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import pickle
import re
import shutil
import sys
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from modelserve.core import compiled
from modelserve.core.compiled import CompiledForm
from modelserve.core.errors import (
    AttachmentNotFoundError,
    DeserializationError,
    IncompatibleArtifactError,
    IntegrityError,
    InvalidModelNameError,
    ManifestError,
    ModelNotFoundError,
    PickleNotAllowedError,
    PublishError,
    SignatureError,
    UntrustedTypeError,
    VersionNotFoundError,
)
from modelserve.core.files import (
    RefusedFileError,
    StoreLimits,
    check_archive,
    is_directory,
    read_regular,
)
from modelserve.core.lifecycle import held, remove_stale
from modelserve.core.manifest import (
    COMPILED_FILE,
    LINEAR_FILE,
    MANIFEST_FILE,
    MODEL_FILES,
    ArtifactFormat,
    CompiledInfo,
    EstimatorInfo,
    FeatureSchema,
    LinearForm,
    Manifest,
    OutputSpec,
    RuntimeVersions,
    Task,
    TrainingData,
)
from modelserve.core.signing import SIGNATURE_FILE, sign, verify

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TMP_PREFIX = ".tmp-"
STALE_SECONDS = 60.0
"""A ``.tmp-*`` directory that no live publisher holds and that is older than this was left by
a publisher that was killed: it is removed (see :mod:`modelserve.core.lifecycle`)."""
_PUBLISH_ATTEMPTS = 100


def parse_version(text: str) -> int | None:
    """The version ``text`` names, or None: versions are ASCII digits (U+0661 and '²' are not).

    ``int()`` and ``str.isdigit()`` both accept other scripts' digits; every place a version
    comes in (URL paths, directory names, command-line options) reads it through here.
    """
    return int(text) if text.isascii() and text.isdigit() else None


def _version_directory(name: str) -> int | None:
    """The version a directory named ``name`` holds: its canonical number (no leading 0)."""
    version = parse_version(name)
    return version if version is not None and version >= 1 and str(version) == name else None


def validate_model_name(name: str) -> str:
    """Return ``name`` if it is safe as a directory name, else raise InvalidModelNameError."""
    if not _NAME.fullmatch(name):
        raise InvalidModelNameError(
            f"invalid model name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


class ManifestDraft(BaseModel):
    """The parts of a manifest that training knows; the store fills in the rest on publish."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    runtime: RuntimeVersions
    estimator: EstimatorInfo
    task: Task
    input_schema: FeatureSchema
    output: OutputSpec
    metrics: dict[str, float]
    training_data: TrainingData
    compiled: CompiledInfo | None = None


_ATTACHMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class LoadPolicy:
    """What the server trusts when it loads an artifact. Comes from Settings, never an artifact."""

    trusted_types: tuple[str, ...] = ()
    allow_pickle: bool = False
    allow_version_mismatch: bool = False
    verify_key: Ed25519PublicKey | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class LoadedArtifact:
    """A verified manifest and the estimator deserialized from the file it describes.

    A deferred load (``ModelStore.load(..., defer_estimator=True)`` of a version published with
    ``linear.json`` or ``compiled.bin``) carries that form instead and ``estimator`` is None.
    ``compiled_error`` says why a version's compiled form could not be read (it is then not
    carried, and the estimator is loaded).
    """

    manifest: Manifest
    estimator: Any = field(repr=False)
    linear: LinearForm | None = None
    compiled: CompiledForm | None = field(default=None, repr=False)
    compiled_error: str | None = None


def serialize(estimator: Any, fmt: ArtifactFormat) -> bytes:
    """Serialize a fitted estimator in the given artifact format."""
    if fmt == "skops":
        import skops.io as sio  # noqa: PLC0415 - ~1 s to import; only when a model needs it

        data: bytes = sio.dumps(estimator)
        return data
    return pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


Fingerprint = tuple[tuple[str, int, int], ...]
"""Names, sizes and modification times of a version's entries (see ModelStore.fingerprint)."""


class ModelStore:
    """A directory of models, each a directory of integer versions.

    Only real directories and regular files inside ``root`` are read, each within ``limits``
    (see :mod:`modelserve.core.files`); a version directory that is a symbolic link is listed, so
    that loading it is refused with the reason, never followed.
    """

    def __init__(self, root: Path, limits: StoreLimits | None = None) -> None:
        self.root = Path(root)
        self.limits = limits if limits is not None else StoreLimits()

    # -- listing ------------------------------------------------------------------------------

    def list_models(self) -> list[str]:
        """Names of the models that have at least one published version, sorted."""
        return sorted(
            entry.name
            for entry in _entries(self.root)
            if _NAME.fullmatch(entry.name)
            and entry.is_dir(follow_symlinks=False)
            and self._versions_in(self.root / entry.name)
        )

    def list_versions(self, name: str) -> list[int]:
        """Published versions of ``name``, oldest first; ModelNotFoundError if there are none."""
        versions = self._versions_in(self.root / validate_model_name(name))
        if not versions:
            raise ModelNotFoundError(f"model {name!r} is not in the store at {self.root}")
        return versions

    def latest_version(self, name: str) -> int:
        return self.list_versions(name)[-1]

    def problem(self) -> str | None:
        """Why the store cannot be read, or None when it can."""
        if not self.root.exists():
            return f"model store {self.root} does not exist"
        if not self.root.is_dir():
            return f"model store {self.root} is not a directory"
        try:
            next(self.root.iterdir(), None)
        except OSError as exc:
            return f"model store {self.root} cannot be read: {exc.strerror or exc}"
        return None

    def remove_stale_temporaries(self) -> list[Path]:
        """Remove what killed publishers left (``.tmp-*`` directories nobody holds)."""
        return [
            path
            for entry in _entries(self.root)
            if _NAME.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False)
            for path in remove_stale(self.root / entry.name, _TMP_PREFIX, STALE_SECONDS)
        ]

    def is_empty(self) -> bool:
        return not self.list_models()

    def version_dir(self, name: str, version: int) -> Path:
        return self.root / validate_model_name(name) / str(version)

    def _versions_in(self, model_dir: Path) -> list[int]:
        if not is_directory(self.root, (model_dir.name,)):
            return []
        versions = []
        for entry in _entries(model_dir):
            version = _version_directory(entry.name)
            if version is not None and (entry.is_symlink() or entry.is_dir(follow_symlinks=False)):
                versions.append(version)
        return sorted(versions)

    def fingerprint(self, name: str, version: int) -> Fingerprint:
        """Names, sizes and mtimes of a version's entries, links not followed: a change in
        them earns a refused version another try."""
        directory = self.version_dir(name, version)
        try:
            own = directory.lstat()
        except OSError:
            return ()
        prints = [("", own.st_size, own.st_mtime_ns)]
        if is_directory(self.root, (name, str(version))):
            for entry in sorted(_entries(directory), key=lambda e: e.name):
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                prints.append((entry.name, info.st_size, info.st_mtime_ns))
        return tuple(prints)

    def _read(self, name: str, version: int, file_name: str, limit: int) -> bytes:
        return read_regular(self.root, (name, str(version), file_name), limit)

    # -- reading ------------------------------------------------------------------------------

    def read_attachment(self, manifest: Manifest, file_name: str) -> bytes:
        """A file published with a verified ``manifest``, checked against its sha256."""
        label = f"{manifest.name} v{manifest.version}"
        expected = manifest.attachments.get(file_name)
        if expected is None:
            raise AttachmentNotFoundError(
                f"{label} has no {file_name} (versions published before training reports, "
                "and imported models, have none)"
            )
        # A compiled form is as large as the model it describes, and limited like it.
        limit = (
            self.limits.model_bytes if file_name == COMPILED_FILE else self.limits.attachment_bytes
        )
        try:
            content = self._read(manifest.name, manifest.version, file_name, limit)
        except OSError as exc:
            raise IntegrityError(f"{label}: cannot read {file_name}: {_reason(exc)}") from exc
        if sha256_hex(content) != expected:
            raise IntegrityError(f"{label}: {file_name} does not match its sha256 in the manifest")
        return content

    def read_manifest(
        self, name: str, version: int | None = None, verify_key: Ed25519PublicKey | None = None
    ) -> Manifest:
        """Read and validate one version's manifest (the newest when ``version`` is None).

        With ``verify_key``, the manifest's bytes must carry a valid signature first.
        """
        if version is None:
            version = self.latest_version(name)
        if version not in self.list_versions(name):  # ModelNotFoundError for an unknown model
            raise VersionNotFoundError(f"model {name!r} has no version {version}")
        limit = self.limits.manifest_bytes
        try:
            raw = self._read(name, version, MANIFEST_FILE, limit)
        except FileNotFoundError as exc:
            raise ManifestError(f"{name} v{version}: {MANIFEST_FILE} is missing") from exc
        except OSError as exc:
            raise ManifestError(
                f"{name} v{version}: cannot read {MANIFEST_FILE}: {_reason(exc)}"
            ) from exc
        if verify_key is not None:
            try:
                signature = self._read(name, version, SIGNATURE_FILE, limit)
            except FileNotFoundError as exc:
                raise SignatureError(
                    f"{name} v{version} is not signed ({SIGNATURE_FILE} is missing) and this "
                    "server requires signed manifests (MODELSERVE_VERIFY_KEY)"
                ) from exc
            except OSError as exc:
                raise SignatureError(
                    f"{name} v{version}: cannot read {SIGNATURE_FILE}: {_reason(exc)}"
                ) from exc
            if not verify(verify_key, raw, signature):
                raise SignatureError(
                    f"{name} v{version}: the manifest's signature does not match the server's "
                    "verify key; refusing to load it"
                )
        try:
            manifest = Manifest.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "document"
            raise ManifestError(
                f"{name} v{version}: {MANIFEST_FILE} is invalid ({where}: {first['msg']})"
            ) from exc
        if manifest.name != name or manifest.version != version:
            raise ManifestError(
                f"{name} v{version}: manifest describes {manifest.name!r} v{manifest.version}, "
                "not the directory it is in"
            )
        if manifest.model_file != MODEL_FILES[manifest.format]:
            raise ManifestError(
                f"{name} v{version}: model_file must be {MODEL_FILES[manifest.format]!r} "
                f"for format {manifest.format!r}, not {manifest.model_file!r}"
            )
        return manifest

    def load(
        self,
        name: str,
        version: int | None,
        policy: LoadPolicy,
        *,
        defer_estimator: bool = False,
        compiled: bool = True,
    ) -> LoadedArtifact:
        """Verify one version against its manifest and deserialize it under ``policy``.

        Raises an :class:`~modelserve.core.errors.ArtifactError` subclass for anything that must not
        be served; the model file is never deserialized before its sha256 matched.

        With ``defer_estimator``, a version published with ``linear.json`` is verified exactly
        the same way (signature, manifest, model file's sha256, library version, the linear
        form's own sha256) but not deserialized: the artifact carries the linear form and no
        estimator, so the server can answer before scikit-learn is even imported. The caller
        loads the estimator later and checks the two agree (see ``Predictor.confirm``). A version
        published with ``compiled.bin`` is deferred the same way; ``compiled=False`` leaves that
        form unread (the server's ``compiled_forms`` setting).
        """
        manifest = self.read_manifest(name, version, policy.verify_key)
        label = f"{manifest.name} v{manifest.version}"
        if manifest.format == "pickle" and not policy.allow_pickle:
            raise PickleNotAllowedError(
                f"{label} is a pickle artifact and pickle loading is off: pickle runs code on "
                "load. Re-train with the default skops format, or set MODELSERVE_ALLOW_PICKLE=true "
                "if you trust this store"
            )
        try:
            payload = self._read(
                manifest.name, manifest.version, manifest.model_file, self.limits.model_bytes
            )
        except FileNotFoundError as exc:
            raise IntegrityError(f"{label}: model file {manifest.model_file} is missing") from exc
        except OSError as exc:
            raise IntegrityError(
                f"{label}: cannot read {manifest.model_file}: {_reason(exc)}"
            ) from exc
        digest = sha256_hex(payload)
        if len(payload) != manifest.size_bytes or digest != manifest.sha256:
            raise IntegrityError(
                f"{label}: {manifest.model_file} does not match its manifest "
                f"(sha256 {digest[:12]}…, {len(payload)} bytes; expected "
                f"{manifest.sha256[:12]}…, {manifest.size_bytes} bytes): "
                "the file is truncated or was modified; refusing to load it"
            )
        running = _sklearn_version()
        if manifest.runtime.sklearn != running:
            message = (
                f"{label} was trained with scikit-learn {manifest.runtime.sklearn} but this "
                f"server runs {running}; loading across versions is unsupported"
            )
            if not policy.allow_version_mismatch:
                raise IncompatibleArtifactError(
                    message + " (set MODELSERVE_ALLOW_VERSION_MISMATCH=true to load it anyway)"
                )
            logger.warning("%s; loading anyway because allow_version_mismatch is set", message)
        if manifest.format == "skops":
            try:  # before anything is unpacked, deferred or not
                check_archive(payload, self.limits)
            except RefusedFileError as exc:
                raise DeserializationError(
                    f"{label}: not a readable skops file: {manifest.model_file} "
                    f"{exc.strerror}; refusing to open it"
                ) from exc
        form, form_error = self._compiled_form(manifest) if compiled else (None, None)
        if not compiled and COMPILED_FILE in manifest.attachments:
            form_error = "compiled forms are switched off (MODELSERVE_COMPILED_FORMS=false)"
        if defer_estimator and form is not None:
            return LoadedArtifact(manifest=manifest, estimator=None, compiled=form)
        if defer_estimator and LINEAR_FILE in manifest.attachments:
            linear = self._linear_form(manifest)
            if linear is not None:
                return LoadedArtifact(manifest=manifest, estimator=None, linear=linear)
        estimator = deserialize(label, payload, manifest.format, policy)
        _check_estimator(label, estimator, manifest)
        return LoadedArtifact(
            manifest=manifest, estimator=estimator, compiled=form, compiled_error=form_error
        )

    def _compiled_form(self, manifest: Manifest) -> tuple[CompiledForm | None, str | None]:
        """The version's ``compiled.bin`` read and checked, or None and why not.

        A form that was changed after publishing (its sha256), cannot be read, or does not take
        the model's inputs is not used; the version is served by its estimator instead.
        """
        if COMPILED_FILE not in manifest.attachments:
            return None, None  # the manifest's own ``compiled.reason`` says why
        try:
            form = compiled.loads(self.read_attachment(manifest, COMPILED_FILE))
            if form.n_inputs != manifest.input_schema.count:
                raise compiled.CompiledFormError(
                    f"it takes {form.n_inputs} features, not the model's "
                    f"{manifest.input_schema.count}"
                )
        except (IntegrityError, AttachmentNotFoundError, compiled.CompiledFormError) as exc:
            reason = f"{COMPILED_FILE} is not used: {exc}"
            logger.warning(
                "%s v%d: %s; serving the estimator instead", manifest.name, manifest.version, reason
            )
            return None, reason
        return form, None

    def _linear_form(self, manifest: Manifest) -> LinearForm | None:
        """The version's verified ``linear.json``, or None (then the estimator is loaded)."""
        content = self.read_attachment(manifest, LINEAR_FILE)  # IntegrityError if it changed
        try:
            linear = LinearForm.model_validate_json(content)
        except ValidationError:
            linear = None
        if linear is None or len(linear.coef) != manifest.input_schema.count:
            logger.warning(
                "%s v%d: %s is not a usable linear form; loading the estimator instead",
                manifest.name,
                manifest.version,
                LINEAR_FILE,
            )
            return None
        return linear

    # -- publishing ---------------------------------------------------------------------------

    def publish(
        self,
        name: str,
        payload: bytes,
        fmt: ArtifactFormat,
        draft: ManifestDraft,
        signing_key: Ed25519PrivateKey | None = None,
        attachments: Mapping[str, bytes] | None = None,
    ) -> Manifest:
        """Publish ``payload`` as the next version of ``name`` and return its manifest.

        Safe against concurrent publishers: a version directory that appeared meanwhile is never
        replaced; the next free number is taken instead. With ``signing_key`` the manifest's
        signature is written beside it, inside the same atomic rename. ``attachments`` (the
        training report) are written into the version too, their sha256 in the manifest.
        """
        validate_model_name(name)
        attachments = dict(attachments or {})
        reserved = {MANIFEST_FILE, SIGNATURE_FILE, *MODEL_FILES.values()}
        # linear.json is published by training, which checked it against the estimator.
        for file_name in attachments:
            if not _ATTACHMENT.match(file_name) or file_name in reserved:
                raise PublishError(f"{file_name!r} cannot be an attachment's file name")
        model_dir = self.root / name
        try:
            model_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PublishError(f"cannot create {model_dir}: {exc}") from exc
        if not is_directory(self.root, (name,)):
            raise PublishError(f"{model_dir} is not a directory of the store (a symbolic link?)")
        remove_stale(model_dir, _TMP_PREFIX, STALE_SECONDS)
        tmp = model_dir / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
        stack = contextlib.ExitStack()
        try:
            tmp.mkdir()
            stack.enter_context(held(tmp))  # until renamed or removed: not stale
            model_file = MODEL_FILES[fmt]
            _write_synced(tmp / model_file, payload)
            for file_name, content in attachments.items():
                _write_synced(tmp / file_name, content)
            version = (self._versions_in(model_dir) or [0])[-1] + 1
            for _ in range(_PUBLISH_ATTEMPTS):
                manifest = Manifest(
                    name=name,
                    version=version,
                    created_at=datetime.now(UTC),
                    format=fmt,
                    model_file=model_file,
                    sha256=sha256_hex(payload),
                    size_bytes=len(payload),
                    attachments={n: sha256_hex(c) for n, c in sorted(attachments.items())},
                    **dict(draft),
                )
                document = _manifest_json(manifest)
                _write_synced(tmp / MANIFEST_FILE, document)
                if signing_key is not None:
                    _write_synced(tmp / SIGNATURE_FILE, sign(signing_key, document))
                _fsync_dir(tmp)
                try:
                    # rename(2) refuses a non-empty target, so a version is never overwritten.
                    tmp.rename(model_dir / str(version))
                except OSError:
                    if not (model_dir / str(version)).exists():
                        raise
                    version = self._versions_in(model_dir)[-1] + 1
                    continue
                _fsync_dir(model_dir)
                logger.info("published %s v%d in %s", name, version, model_dir / str(version))
                return manifest
            raise PublishError(f"could not find a free version number for {name!r}")
        except OSError as exc:
            raise PublishError(f"publishing {name!r} into {model_dir} failed: {exc}") from exc
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
            stack.close()


def _sklearn_version() -> str:
    """The running scikit-learn's version, without importing it (~1 s) when it is not loaded."""
    loaded = sys.modules.get("sklearn")
    if loaded is not None:
        return str(loaded.__version__)
    try:
        return importlib.metadata.version("scikit-learn")
    except importlib.metadata.PackageNotFoundError:
        import sklearn  # noqa: PLC0415 - installed without metadata

        return str(sklearn.__version__)


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    """The entries of ``directory``; none when it cannot be listed."""
    try:
        with os.scandir(directory) as entries:
            return list(entries)
    except OSError:
        return []


def _reason(exc: OSError) -> str:
    """Why a store file could not be read, in words (a refusal names what it refused)."""
    if isinstance(exc, RefusedFileError):
        return f"{exc.filename} {exc.strerror}"
    return str(exc.strerror or exc)


def deserialize(label: str, payload: bytes, fmt: ArtifactFormat, policy: LoadPolicy) -> Any:
    """The estimator in ``payload``, loaded as the server loads it: skops with ``policy``'s
    allowlist (UntrustedTypeError naming any other type), or pickle (the caller checked that
    pickle is allowed). ``label`` names the model in errors."""
    if fmt == "skops":
        return _load_skops(label, payload, policy)
    return _load_pickle(label, payload)


def _load_skops(label: str, payload: bytes, policy: LoadPolicy) -> Any:
    import skops.io as sio  # noqa: PLC0415 - ~1 s to import; only when a model needs it

    try:
        untrusted = sio.get_untrusted_types(data=payload)
    except Exception as exc:  # skops raises zipfile/JSON/key errors on malformed files
        raise DeserializationError(f"{label}: not a readable skops file: {exc}") from exc
    refused = sorted(set(untrusted) - set(policy.trusted_types))
    if refused:
        raise UntrustedTypeError(
            f"{label} contains types outside the server's allowlist: {', '.join(refused)} "
            "(add them to MODELSERVE_TRUSTED_TYPES only if you trust them)",
            types=refused,
        )
    try:
        with _SKOPS_LOADS:
            return sio.loads(payload, trusted=list(policy.trusted_types))
    except Exception as exc:
        raise DeserializationError(f"{label}: skops could not load the model: {exc}") from exc


_SKOPS_LOADS = threading.Lock()
"""One skops load at a time in a process. skops reads each array's header with
``ast.literal_eval``, and CPython 3.11's compiler keeps a recursion count that two threads
compiling at once can corrupt ("SystemError: AST constructor recursion depth mismatch"):
seen when the server's background confirmation loaded a model while another thread did."""


def _load_pickle(label: str, payload: bytes) -> Any:
    try:
        return pickle.loads(payload)
    except Exception as exc:
        raise DeserializationError(f"{label}: pickle could not load the model: {exc}") from exc


def _check_estimator(label: str, estimator: Any, manifest: Manifest) -> None:
    if not callable(getattr(estimator, "predict", None)):
        raise DeserializationError(f"{label}: the loaded object has no predict method")
    n_features = getattr(estimator, "n_features_in_", manifest.input_schema.count)
    if n_features != manifest.input_schema.count:
        raise DeserializationError(
            f"{label}: the estimator takes {n_features} features but the manifest declares "
            f"{manifest.input_schema.count}"
        )


def _manifest_json(manifest: Manifest) -> bytes:
    return json.dumps(manifest.model_dump(mode="json"), indent=2).encode() + b"\n"


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
