"""The batch type: its forms, and what only a checked batch gives."""

from __future__ import annotations

import numpy as np
import pytest

from modelserve.core.batch import Batch, checked


def test_a_batch_counts_its_rows_in_every_form() -> None:
    assert len(Batch.of_matrix(np.zeros((3, 2)))) == 3
    assert len(Batch.of_records([[1.0], [2.0]])) == 2
    assert len(Batch.of_columns([("a", np.zeros(4)), ("b", np.zeros(4))])) == 4
    assert len(Batch.of_columns([])) == 0


def test_only_a_checked_batch_has_rows_to_predict() -> None:
    with pytest.raises(ValueError, match="only a checked batch"):
        _ = Batch.of_matrix(np.zeros((1, 2))).rows
    with pytest.raises(ValueError, match="only a checked batch"):
        _ = Batch.of_records([[1.0, 2.0]]).rows
    rows = np.ones((1, 2))
    assert checked(rows).rows is rows


def test_a_batch_says_what_it_is() -> None:
    assert repr(Batch.of_records([[1.0]])) == "Batch(1 rows, records, unchecked)"
    assert repr(checked(np.zeros((2, 1)))) == "Batch(2 rows, matrix, checked)"
