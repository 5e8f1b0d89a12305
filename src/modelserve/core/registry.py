"""The set of model versions a server serves, kept in step with the store while traffic flows.

Transport-agnostic: the HTTP layers (native and /v2) and the CLI ask the registry for a
:class:`~modelserve.core.predictor.Predictor` by name and optional version.

Live updates are copy-on-write: a new version is read, verified, deserialized and smoke-tested
off the request path, then the model's state is replaced by one assignment. A request that already
holds a Predictor finishes on it; the next request sees the new state. A version that fails any
step is recorded with its reason and never served, and the versions already loaded keep serving.

A server's registry defers estimators (``defer_estimators=True``): a version published with a
lean form (``linear.json`` for a linear model, ``compiled.bin`` for a tree ensemble) is verified
and served from that form at once, so start-up does not wait for scikit-learn and skops to
import; one background thread then loads each estimator, confirms the form agrees with it and
times the two (``Predictor.confirm``). If the estimator cannot be loaded then (its files left
the store), the version keeps serving the form verified at load.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, Protocol

from modelserve.core.errors import (
    ArtifactError,
    DeserializationError,
    ModelNotFoundError,
    ModelUnavailableError,
    StoreError,
    UntrustedTypeError,
    VersionNotFoundError,
)
from modelserve.core.files import StoreLimits
from modelserve.core.predictor import Predictor
from modelserve.core.settings import Settings
from modelserve.core.signing import load_verify_key
from modelserve.core.store import Fingerprint, LoadedArtifact, LoadPolicy, ModelStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Failure:
    """A version the registry refused, why, and what its files looked like then."""

    reason: str
    fingerprint: Fingerprint


@dataclass(frozen=True, slots=True)
class ModelState:
    """An immutable snapshot of one model: replaced as a whole, never changed in place."""

    name: str
    loaded: Mapping[int, Predictor] = field(default_factory=lambda: MappingProxyType({}))
    failed: Mapping[int, Failure] = field(default_factory=lambda: MappingProxyType({}))
    unloaded: bool = False

    @property
    def default_version(self) -> int | None:
        return max(self.loaded) if self.loaded else None


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One line of the repository index."""

    name: str
    version: int | None
    state: Literal["READY", "UNAVAILABLE"]
    reason: str


class RegistryEvents(Protocol):
    """What the registry reports as it works (the server's metrics implement it)."""

    def version_loaded(self, name: str, version: int) -> None:
        """A version passed every check and is now served."""

    def version_refused(self, name: str, version: int, reason: str) -> None:
        """A version failed a check and is not served."""

    def published(self, models: Mapping[str, ModelState]) -> None:
        """The served set changed: ``models`` is the new one."""


class _NoEvents:
    def version_loaded(self, name: str, version: int) -> None:
        pass

    def version_refused(self, name: str, version: int, reason: str) -> None:
        pass

    def published(self, models: Mapping[str, ModelState]) -> None:
        pass


def load_policy(settings: Settings) -> LoadPolicy:
    """The trust policy for loading artifacts, from the server's own settings."""
    return LoadPolicy(
        trusted_types=settings.allowlist,
        allow_pickle=settings.allow_pickle,
        allow_version_mismatch=settings.allow_version_mismatch,
        verify_key=None if settings.verify_key is None else load_verify_key(settings.verify_key),
    )


def store_limits(settings: Settings) -> StoreLimits:
    """The largest store files the server reads, from its own settings."""
    return StoreLimits(model_bytes=settings.max_model_bytes)


def open_store(settings: Settings) -> ModelStore:
    """The store named by ``settings``, read within their limits."""
    return ModelStore(settings.store, store_limits(settings))


class ModelRegistry:
    """Resolves (name, version) to a verified Predictor and follows the store's changes."""

    def __init__(
        self,
        settings: Settings,
        events: RegistryEvents | None = None,
        *,
        defer_estimators: bool = False,
        confirm_in_background: bool = True,
    ) -> None:
        self.events: RegistryEvents = events if events is not None else _NoEvents()
        self.defer_estimators = defer_estimators
        self.confirm_in_background = confirm_in_background
        self.store = open_store(settings)
        self.policy = load_policy(settings)
        self.max_rows = settings.max_rows
        self.max_problems = settings.max_error_details
        self.strict_readiness = settings.strict_readiness
        self.compiled_forms = settings.compiled_forms
        self._unservable: frozenset[str] = frozenset()
        self._models: Mapping[str, ModelState] = MappingProxyType({})
        self._lock = threading.Lock()  # one writer at a time; readers never wait
        self._confirm_lock = threading.Lock()
        self._confirmer: threading.Thread | None = None
        self._confirm_again = False

    # -- loading ------------------------------------------------------------------------------

    def load_predictor(
        self, name: str, version: int | None = None, *, defer: bool = False
    ) -> Predictor:
        """Verify, load and smoke-test one version: ``version``, or, when it is None, the newest
        that passes, as the server picks (newer ones that fail are logged and skipped; if none
        passes, the newest one's error is raised).

        With ``defer``, a version published with a lean form is not deserialized yet: see
        :meth:`confirm_pending`.
        """
        if version is not None:
            return self._load_version(name, version, defer)
        versions = self.store.list_versions(name)
        first: ArtifactError | None = None
        for candidate in reversed(versions):
            try:
                return self._load_version(name, candidate, defer)
            except ArtifactError as exc:
                logger.warning("%s v%d is not served: %s", name, candidate, exc.message)
                first = first or exc
        assert first is not None  # noqa: S101 - list_versions raises when there are none
        raise first

    def _load_version(self, name: str, version: int, defer: bool) -> Predictor:
        artifact = self.store.load(
            name, version, self.policy, defer_estimator=defer, compiled=self.compiled_forms
        )
        exact = artifact.manifest.version

        def load_estimator() -> LoadedArtifact:
            return self.store.load(name, exact, self.policy, compiled=False)

        predictor = Predictor(
            artifact,
            max_rows=self.max_rows,
            max_problems=self.max_problems,
            load_estimator=None if artifact.estimator is not None else load_estimator,
        )
        predictor.smoke_test()
        return predictor

    def confirm_pending(self) -> None:
        """Load every deferred estimator and confirm it agrees with its lean form.

        A version whose estimator turns out not to load (not a model, untrusted types, a
        manifest it does not fit) is withdrawn: refused with the reason, as if it had failed at
        load, and the model's other versions serve. One whose files merely changed or left the
        store since they were verified keeps serving the form verified at load, like any
        verified copy held in memory, and is listed as unconfirmed with the reason
        (``confirm_error``).
        """
        while True:
            pending = [
                (name, version, predictor)
                for name, state in self._models.items()
                for version, predictor in state.loaded.items()
                if not predictor.settled
            ]
            if not pending:
                return
            for name, version, predictor in pending:
                try:
                    predictor.confirm()
                except (DeserializationError, UntrustedTypeError) as exc:
                    self._withdraw(name, version, predictor, exc.message)
                except (ArtifactError, StoreError) as exc:  # its files changed or left
                    predictor.confirm_error = exc.message
                    logger.error(
                        "%s v%d: not confirmed against its estimator (%s); it keeps serving "
                        "the form verified at load",
                        name,
                        version,
                        exc.message,
                    )
                except Exception as exc:  # a failure nobody foresaw: not served on trust
                    self._withdraw(name, version, predictor, f"cannot load the estimator: {exc}")
                else:
                    logger.info("confirmed %s v%d against its estimator", name, version)

    def _withdraw(self, name: str, version: int, predictor: Predictor, error: str) -> None:
        """Stop serving a loaded version whose estimator failed, recording it as refused."""
        predictor.confirm_error = error
        reason = f"its estimator failed: {error}"
        with self._lock:
            state = self._models.get(name)
            if state is None or state.loaded.get(version) is not predictor:
                return  # replaced or dropped meanwhile
            loaded = {v: p for v, p in state.loaded.items() if v != version}
            failed = {
                **state.failed,
                version: Failure(reason, self.store.fingerprint(name, version)),
            }
            new = ModelState(name, MappingProxyType(loaded), MappingProxyType(failed))
            self._publish({**self._models, name: new})
        self.events.version_refused(name, version, reason)
        logger.error("withdrew %s v%d: %s", name, version, reason)

    def wait_confirmed(self, timeout: float | None = None) -> bool:
        """Wait for the background confirmation to finish; True when nothing is pending."""
        with self._confirm_lock:
            thread = self._confirmer
        if thread is not None:
            thread.join(timeout)
        return self.all_confirmed

    @property
    def all_confirmed(self) -> bool:
        """Whether no served version is still waiting for its deferred estimator."""
        return all(p.settled for s in self._models.values() for p in s.loaded.values())

    def _confirm_in_background(self) -> None:
        if not (self.defer_estimators and self.confirm_in_background):
            return
        with self._confirm_lock:
            if self._confirmer is not None:
                self._confirm_again = True
                return
            thread = threading.Thread(
                target=self._confirm_loop, name="modelserve-confirm", daemon=True
            )
            self._confirmer = thread
        thread.start()

    def _confirm_loop(self) -> None:
        while True:
            self.confirm_pending()
            with self._confirm_lock:
                if not self._confirm_again:
                    self._confirmer = None
                    return
                self._confirm_again = False

    def load_all(self) -> None:
        """Load every version of every model in the store (at startup)."""
        self.sync()

    def sync(self) -> None:
        """Bring the registry in step with the store.

        New versions are loaded; versions whose directory is gone are dropped; refused versions
        are retried only when their files changed. Models unloaded through the repository API
        stay unloaded until loaded again.
        """
        with self._lock:
            problem = self.store.problem()
            if problem is not None and self._models:
                # An unmounted or unreadable store must not take the served models down with it.
                logger.error("%s; keeping the models already loaded", problem)
                return
            names = set(self.store.list_models())
            current = self._models
            updated = {
                name: self._sync_model(current.get(name) or ModelState(name))
                for name in sorted(names | set(current))
            }
            self._publish(
                {name: s for name, s in updated.items() if s.loaded or s.failed or s.unloaded}
            )
        self._confirm_in_background()

    def load_model(self, name: str) -> ModelState:
        """Load (or reload) every version of a model from the store, verifying each afresh.

        A version that was serving but no longer verifies on disk (files deleted or changed)
        keeps serving its verified copy from memory, and the reload is refused with the reason.
        """
        with self._lock:
            previous = self._models.get(name)
            if previous is None and name not in self.store.list_models():
                raise ModelNotFoundError(f"model {name!r} is not in the store at {self.store.root}")
            serving = previous.loaded if previous else {}
            loaded: dict[int, Predictor] = {}
            failed: dict[int, Failure] = {}
            refused: list[str] = []
            for version in self._versions_on_disk(name):
                try:
                    loaded[version] = self.load_predictor(
                        name, version, defer=self.defer_estimators
                    )
                    self.events.version_loaded(name, version)
                except (ArtifactError, StoreError) as exc:
                    self.events.version_refused(name, version, exc.message)
                    if version in serving:
                        loaded[version] = serving[version]
                        refused.append(exc.message)
                    else:
                        fingerprint = self.store.fingerprint(name, version)
                        failed[version] = Failure(exc.message, fingerprint)
                    logger.error("refused to load %s v%d: %s", name, version, exc.message)
            state = ModelState(name, MappingProxyType(loaded), MappingProxyType(failed))
            self._publish({**self._models, name: state})
        self._confirm_in_background()
        if refused:
            raise ModelUnavailableError(
                f"reload of {name!r} refused: {'; '.join(refused)}; the copy verified at its "
                "first load keeps serving from memory"
            )
        if not state.loaded:
            reasons = "; ".join(f.reason for f in state.failed.values()) or "no versions"
            raise ModelUnavailableError(f"model {name!r} could not be loaded: {reasons}")
        return state

    def _versions_on_disk(self, name: str) -> list[int]:
        try:
            return self.store.list_versions(name)
        except StoreError:
            return []

    def unload_model(self, name: str) -> None:
        """Stop serving a model until it is loaded again; the store is left as it is."""
        with self._lock:
            if name not in self._models:
                raise ModelNotFoundError(f"model {name!r} is not served")
            self._publish({**self._models, name: ModelState(name, unloaded=True)})
        logger.info("unloaded %s", name)

    def _sync_model(self, state: ModelState) -> ModelState:
        if state.unloaded:
            return state
        on_disk = self._versions_on_disk(state.name)
        loaded = {v: p for v, p in state.loaded.items() if v in on_disk}
        failed: dict[int, Failure] = {}
        for version in on_disk:
            if version in loaded:
                continue
            fingerprint = self.store.fingerprint(state.name, version)
            previous = state.failed.get(version)
            if previous is not None and previous.fingerprint == fingerprint:
                failed[version] = previous
                continue
            try:
                loaded[version] = self.load_predictor(
                    state.name, version, defer=self.defer_estimators
                )
            except (ArtifactError, StoreError) as exc:
                failed[version] = Failure(exc.message, fingerprint)
                self.events.version_refused(state.name, version, exc.message)
                logger.error("refused to load %s v%d: %s", state.name, version, exc.message)
            else:
                self.events.version_loaded(state.name, version)
                logger.info("loaded %s v%d", state.name, version)
        for version in sorted(set(state.loaded) - set(loaded)):
            logger.info("dropped %s v%d: its directory left the store", state.name, version)
        new = ModelState(state.name, MappingProxyType(loaded), MappingProxyType(failed))
        if state.default_version is not None and new.default_version != state.default_version:
            logger.info(
                "%s now answers with v%s (was v%s)",
                state.name,
                new.default_version,
                state.default_version,
            )
        return new

    def _publish(self, models: Mapping[str, ModelState]) -> None:
        # One assignment: readers see the old mapping or the new one, never a mix.
        self._models = MappingProxyType(dict(models))
        unservable = frozenset(self.unservable())
        for name in sorted(unservable - self._unservable):
            reasons = "; ".join(f.reason for f in models[name].failed.values()) or "no versions"
            logger.error(
                "model %s has no version that can be served (%s); %s",
                name,
                reasons,
                "the server is not ready (MODELSERVE_STRICT_READINESS)"
                if self.strict_readiness
                else "the other models keep serving",
            )
        self._unservable = unservable
        self.events.published(self._models)

    # -- reading ------------------------------------------------------------------------------

    @property
    def models(self) -> Mapping[str, ModelState]:
        return self._models

    def loaded_versions(self) -> dict[str, list[int]]:
        """Every model with at least one loaded version, and those versions."""
        return {name: sorted(s.loaded) for name, s in self._models.items() if s.loaded}

    def unservable(self) -> list[str]:
        """The models to serve (not unloaded on purpose) that have no verified version."""
        return [s.name for s in self._models.values() if not s.unloaded and not s.loaded]

    @property
    def ready(self) -> bool:
        """True while at least one model can be served and, under ``strict_readiness``
        (``MODELSERVE_STRICT_READINESS``), every model that should be served can."""
        wanted = [s for s in self._models.values() if not s.unloaded]
        if self.strict_readiness:
            return bool(wanted) and all(s.loaded for s in wanted)
        return any(s.loaded for s in wanted)

    def check_ready(self) -> None:
        """Raise ModelUnavailableError with the reason while the server is not ready."""
        if not self.ready:
            raise ModelUnavailableError(f"not ready: {self.not_ready_reason()}")

    def not_ready_reason(self) -> str:
        wanted = [s for s in self._models.values() if not s.unloaded]
        if not wanted:
            return f"no model to serve in the store at {self.store.root}"
        missing = [s.name for s in wanted if not s.loaded]
        return f"no verified version loaded for: {', '.join(missing)}"

    def state(self, name: str) -> ModelState:
        state = self._models.get(name)
        if state is None:
            known = ", ".join(sorted(self._models)) or "none"
            raise ModelNotFoundError(f"model {name!r} is not served (models: {known})")
        if state.unloaded:
            raise ModelNotFoundError(f"model {name!r} is unloaded; load it to serve it again")
        return state

    def get(self, name: str, version: int | None = None) -> Predictor:
        """The predictor for ``name`` at ``version``, or at its newest loaded version."""
        state = self.state(name)
        wanted = state.default_version if version is None else version
        if wanted is not None and wanted in state.loaded:
            return state.loaded[wanted]
        if wanted is None:
            reasons = "; ".join(f.reason for f in state.failed.values())
            raise ModelUnavailableError(
                f"model {name!r} has no version that passed verification: {reasons}"
            )
        if wanted in state.failed:
            raise ModelUnavailableError(
                f"model {name!r} version {wanted} is not served: {state.failed[wanted].reason}"
            )
        available = ", ".join(str(v) for v in sorted(state.loaded)) or "none"
        raise VersionNotFoundError(
            f"model {name!r} has no version {wanted} (versions: {available})"
        )

    def index(self) -> list[IndexEntry]:
        """Every model and version the registry knows, with its state and any refusal reason."""
        entries: list[IndexEntry] = []
        for name, state in sorted(self._models.items()):
            if state.unloaded:
                entries.append(IndexEntry(name, None, "UNAVAILABLE", "unloaded"))
                continue
            versions = sorted({*state.loaded, *state.failed})
            for version in versions:
                failure = state.failed.get(version)
                entries.append(
                    IndexEntry(name, version, "UNAVAILABLE", failure.reason)
                    if failure
                    else IndexEntry(name, version, "READY", "")
                )
        return entries


__all__ = [
    "Failure",
    "IndexEntry",
    "ModelRegistry",
    "ModelState",
    "RegistryEvents",
    "load_policy",
    "open_store",
    "store_limits",
]
