"""The one error hierarchy of modelserve. It knows nothing of HTTP.

::

    ModelServeError
    ├── StoreError                   the model store, by name and version
    │   ├── InvalidModelNameError
    │   ├── ModelNotFoundError
    │   ├── VersionNotFoundError
    │   ├── AttachmentNotFoundError    a version without the requested report file
    │   └── PublishError
    ├── ArtifactError                a version exists but must not be served
    │   ├── ManifestError              missing or invalid manifest.json
    │   ├── IntegrityError             model file missing, truncated or tampered (sha256)
    │   ├── IncompatibleArtifactError  trained with another scikit-learn version
    │   ├── UntrustedTypeError         skops file holds a type outside the allowlist
    │   ├── PickleNotAllowedError      pickle artifact while pickle loading is off
    │   ├── SignatureError             unsigned or wrongly signed, while signatures are required
    │   ├── DeserializationError       the verified file still failed to load
    │   └── SmokeTestError             the loaded model failed its trial prediction
    ├── SigningKeyError              a signing or verify key that cannot be used
    ├── ModelUnavailableError        a model exists but none of its versions loaded
    ├── InvalidInputError            a request the model cannot accept (field-level problems)
    ├── PayloadTooLargeError         a request body over the byte limit
    ├── UnsupportedOutputError       e.g. class probabilities from a regressor
    ├── DeadlineExceededError        a request took longer than its deadline
    ├── OverloadedError              too many requests at once: shed, not queued
    ├── UnauthorizedError            no API key where one is needed
    ├── ForbiddenError               a wrong key, or a key without the privilege
    ├── BatchFileError               a file to score that cannot be read, or lacks features
    ├── EngineUnavailableError       --engine ray without Ray Serve, or an unreachable cluster
    └── TrainingError
        ├── DatasetError               CSV missing, empty, non-numeric, no target column
        └── UnknownEstimatorError

The API layer maps each class to a status code and a problem+json body in one table
(:mod:`modelserve.http.problems`); the CLI prints the same messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One field-level problem: where (``loc``), what (``msg``) and a stable ``type`` slug."""

    loc: Loc
    msg: str
    type: str


class ModelServeError(Exception):
    """Base of every error modelserve raises on purpose.

    ``code`` is a stable slug (the problem ``type``); ``problems`` lists field-level details.
    """

    code = "error"

    def __init__(self, message: str, *, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.problems: tuple[Problem, ...] = tuple(problems)


class StoreError(ModelServeError):
    code = "store-error"


class InvalidModelNameError(StoreError):
    code = "invalid-model-name"


class ModelNotFoundError(StoreError):
    code = "model-not-found"


class VersionNotFoundError(StoreError):
    code = "version-not-found"


class AttachmentNotFoundError(StoreError):
    code = "attachment-not-found"


class PublishError(StoreError):
    code = "publish-failed"


class ArtifactError(ModelServeError):
    code = "artifact-error"


class ManifestError(ArtifactError):
    code = "invalid-manifest"


class IntegrityError(ArtifactError):
    code = "integrity-check-failed"


class IncompatibleArtifactError(ArtifactError):
    code = "incompatible-artifact"


class UntrustedTypeError(ArtifactError):
    code = "untrusted-type"

    def __init__(self, message: str, *, types: Sequence[str]) -> None:
        super().__init__(message)
        self.types = tuple(types)


class PickleNotAllowedError(ArtifactError):
    code = "pickle-not-allowed"


class SignatureError(ArtifactError):
    code = "signature-invalid"


class SigningKeyError(ModelServeError):
    code = "signing-key-invalid"


class DeserializationError(ArtifactError):
    code = "deserialization-failed"


class SmokeTestError(ArtifactError):
    code = "smoke-test-failed"


class ModelUnavailableError(ModelServeError):
    code = "model-unavailable"


class InvalidInputError(ModelServeError):
    """The request cannot be fed to the model; ``problems`` says where and why.

    ``code`` is the kind of the first problem (``feature-count``, ``not-finite``, ...), so a
    client can branch on the problem type without parsing messages.
    """

    code = "invalid-input"

    def __init__(self, message: str, *, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message, problems=problems)
        if self.problems:
            self.code = self.problems[0].type


class PayloadTooLargeError(ModelServeError):
    code = "payload-too-large"

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class UnsupportedOutputError(ModelServeError):
    code = "unsupported-output"


class DeadlineExceededError(ModelServeError):
    code = "deadline-exceeded"

    @classmethod
    def after(cls, seconds: float) -> DeadlineExceededError:
        """The error of a request that passed its deadline of ``seconds``."""
        return cls(
            f"the request took longer than its deadline of {seconds:g} s "
            "(MODELSERVE_REQUEST_TIMEOUT)"
        )


class OverloadedError(ModelServeError):
    code = "overloaded"


class UnauthorizedError(ModelServeError):
    code = "unauthorized"


class ForbiddenError(ModelServeError):
    code = "forbidden"


class BatchFileError(ModelServeError):
    code = "invalid-batch-file"


class EngineUnavailableError(ModelServeError):
    code = "engine-unavailable"


class TrainingError(ModelServeError):
    code = "training-failed"


class DatasetError(TrainingError):
    code = "invalid-dataset"


class UnknownEstimatorError(TrainingError):
    code = "unknown-estimator"


__all__ = [
    "ArtifactError",
    "AttachmentNotFoundError",
    "BatchFileError",
    "DatasetError",
    "DeadlineExceededError",
    "DeserializationError",
    "EngineUnavailableError",
    "ForbiddenError",
    "IncompatibleArtifactError",
    "IntegrityError",
    "InvalidInputError",
    "InvalidModelNameError",
    "Loc",
    "ManifestError",
    "ModelNotFoundError",
    "ModelServeError",
    "ModelUnavailableError",
    "OverloadedError",
    "PayloadTooLargeError",
    "PickleNotAllowedError",
    "Problem",
    "PublishError",
    "SignatureError",
    "SigningKeyError",
    "SmokeTestError",
    "StoreError",
    "TrainingError",
    "UnauthorizedError",
    "UnknownEstimatorError",
    "UnsupportedOutputError",
    "UntrustedTypeError",
    "VersionNotFoundError",
]
