"""``from modelserve.predictor import Predictor``: the predictor, where the original design put it.

It lives in :mod:`modelserve.core.predictor`.
"""

from modelserve.core.predictor import Batch, Prediction, Predictor

__all__ = ["Batch", "Prediction", "Predictor"]
