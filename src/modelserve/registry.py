"""The set of model versions a server has loaded, and the versions it refused.

Transport-agnostic: the HTTP layer (and any other front end) asks the registry for a
:class:`~modelserve.predictor.Predictor` by name and optional version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from modelserve.errors import (
    ArtifactError,
    ModelNotFoundError,
    ModelUnavailableError,
    StoreError,
    VersionNotFoundError,
)
from modelserve.predictor import Predictor
from modelserve.settings import Settings
from modelserve.store import LoadPolicy, ModelStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelState:
    """What the registry holds for one model name."""

    name: str
    loaded: dict[int, Predictor] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)

    @property
    def default_version(self) -> int | None:
        return max(self.loaded) if self.loaded else None


def load_policy(settings: Settings) -> LoadPolicy:
    """The trust policy for loading artifacts, from the server's own settings."""
    return LoadPolicy(
        trusted_types=tuple(settings.trusted_types),
        allow_pickle=settings.allow_pickle,
        allow_version_mismatch=settings.allow_version_mismatch,
    )


class ModelRegistry:
    """Loads every version in a store; resolves (name, version) to a verified Predictor."""

    def __init__(self, settings: Settings) -> None:
        self.store = ModelStore(settings.store)
        self.policy = load_policy(settings)
        self.max_rows = settings.max_rows
        self.max_problems = settings.max_error_details
        self._models: dict[str, ModelState] = {}

    def load_predictor(self, name: str, version: int | None = None) -> Predictor:
        """Verify and load one version from the store (the newest when ``version`` is None)."""
        artifact = self.store.load(name, version, self.policy)
        return Predictor(artifact, max_rows=self.max_rows, max_problems=self.max_problems)

    def load_all(self) -> None:
        """Load every version of every model in the store; refusals are logged and recorded."""
        models: dict[str, ModelState] = {}
        for name in self.store.list_models():
            state = ModelState(name)
            for version in self.store.list_versions(name):
                try:
                    state.loaded[version] = self.load_predictor(name, version)
                except (ArtifactError, StoreError) as exc:
                    state.failed[version] = exc.message
                    logger.error("refused to load %s v%d: %s", name, version, exc.message)
                else:
                    logger.info("loaded %s v%d", name, version)
            models[name] = state
        self._models = models

    @property
    def models(self) -> dict[str, ModelState]:
        return dict(self._models)

    def loaded_versions(self) -> dict[str, list[int]]:
        """Every model with at least one loaded version, and those versions."""
        return {name: sorted(state.loaded) for name, state in self._models.items() if state.loaded}

    @property
    def ready(self) -> bool:
        return any(state.loaded for state in self._models.values())

    def state(self, name: str) -> ModelState:
        try:
            return self._models[name]
        except KeyError as exc:
            known = ", ".join(sorted(self._models)) or "none"
            raise ModelNotFoundError(f"model {name!r} is not served (models: {known})") from exc

    def get(self, name: str, version: int | None = None) -> Predictor:
        """The predictor for ``name`` at ``version``, or at its newest loaded version."""
        state = self.state(name)
        wanted = state.default_version if version is None else version
        if wanted is not None and wanted in state.loaded:
            return state.loaded[wanted]
        if wanted is None:
            reasons = "; ".join(state.failed.values())
            raise ModelUnavailableError(
                f"model {name!r} has no version that passed verification: {reasons}"
            )
        if wanted in state.failed:
            raise ModelUnavailableError(
                f"model {name!r} version {wanted} is not served: {state.failed[wanted]}"
            )
        available = ", ".join(str(v) for v in sorted(state.loaded)) or "none"
        raise VersionNotFoundError(
            f"model {name!r} has no version {wanted} (versions: {available})"
        )
