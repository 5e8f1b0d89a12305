from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from modelserve.core.settings import DEFAULT_TRUSTED_TYPES, Settings


def test_defaults() -> None:
    settings = Settings()
    assert settings.store == Path("models")
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.default_model == "default"
    assert settings.allow_pickle is False
    assert settings.allow_version_mismatch is False
    assert settings.trusted_types == []
    assert settings.allowlist == DEFAULT_TRUSTED_TYPES
    assert "sklearn.tree._tree.Tree" in settings.allowlist


def test_environment_variables_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSERVE_STORE", "/srv/models")
    monkeypatch.setenv("MODELSERVE_PORT", "9001")
    monkeypatch.setenv("MODELSERVE_MAX_ROWS", "7")
    monkeypatch.setenv("MODELSERVE_MAX_BODY_BYTES", "1024")
    monkeypatch.setenv("MODELSERVE_ALLOW_PICKLE", "true")
    monkeypatch.setenv("MODELSERVE_TRUSTED_TYPES", '["numpy.random.RandomState"]')
    settings = Settings()
    assert settings.store == Path("/srv/models")
    assert (settings.port, settings.max_rows, settings.max_body_bytes) == (9001, 7, 1024)
    assert settings.allow_pickle is True
    assert settings.trusted_types == ["numpy.random.RandomState"]
    # the variable extends the defaults: a forest still loads with it set
    assert settings.allowlist == (*DEFAULT_TRUSTED_TYPES, "numpy.random.RandomState")


def test_trusted_types_that_repeat_a_default_are_listed_once() -> None:
    settings = Settings(trusted_types=["sklearn.tree._tree.Tree", "numpy.random.RandomState"])
    assert settings.allowlist == (*DEFAULT_TRUSTED_TYPES, "numpy.random.RandomState")


def test_keyword_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSERVE_PORT", "9001")
    assert Settings(port=9002).port == 9002


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("port", 0, "greater than or equal to 1"),
        ("port", 70000, "less than or equal to 65535"),
        ("max_rows", 0, "greater than or equal to 1"),
        ("max_body_bytes", 0, "greater than or equal to 1"),
        ("trusted_types", ["Tree"], "is not a fully qualified type name"),
        ("trusted_types", ["os.system; rm"], "is not a fully qualified type name"),
        ("log_level", "loud", "Input should be"),
    ],
)
def test_invariants_are_enforced(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**{field: value})


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Settings(stroe="typo")  # type: ignore[call-arg]
