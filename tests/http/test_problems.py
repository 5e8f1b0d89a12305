from __future__ import annotations

import orjson
import pytest

from modelserve.core import errors
from modelserve.http.problems import ERROR_TABLE, problem_body, status_for


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidInputError("x"), 422),
        (errors.UnsupportedOutputError("x"), 422),
        (errors.PayloadTooLargeError("x", limit=1), 413),
        (errors.ModelNotFoundError("x"), 404),
        (errors.VersionNotFoundError("x"), 404),
        (errors.ModelUnavailableError("x"), 503),
        (errors.IntegrityError("x"), 503),  # via ArtifactError
        (errors.PublishError("x"), 500),  # via StoreError
        (errors.DatasetError("x"), 500),  # via ModelServeError: training is not an HTTP concern
    ],
)
def test_the_most_specific_class_decides_the_status(
    error: errors.ModelServeError, status: int
) -> None:
    assert status_for(error) == status


def test_every_table_entry_is_a_core_error() -> None:
    assert all(issubclass(cls, errors.ModelServeError) for cls in ERROR_TABLE)


def test_problem_body_is_rfc9457_json() -> None:
    problem = errors.Problem(("instances", 0), "row 0 is bad", "feature-count")
    document = orjson.loads(
        problem_body(422, "row 0 is bad", code="feature-count", problems=[problem], instance="/p")
    )
    assert document == {
        "type": "urn:modelserve:problem:feature-count",
        "title": "Unprocessable Entity",
        "status": 422,
        "detail": "row 0 is bad",
        "errors": [{"loc": ["instances", 0], "msg": "row 0 is bad", "type": "feature-count"}],
        "instance": "/p",
    }


def test_invalid_input_takes_the_kind_of_its_first_problem() -> None:
    error = errors.InvalidInputError(
        "two", problems=[errors.Problem((), "a", "not-finite"), errors.Problem((), "b", "x")]
    )
    assert error.code == "not-finite"
    assert errors.InvalidInputError("none").code == "invalid-input"


def test_errors_all_is_honest() -> None:
    public = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, Exception) and not name.startswith("_")
    }
    assert public | {"Loc", "Problem"} == set(errors.__all__)
