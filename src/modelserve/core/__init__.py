"""The core: manifests, the signed model store, the registry of loaded versions, predictors.

Knows nothing of HTTP or of any wire format: errors are :mod:`modelserve.core.errors`, data
arrives as a :class:`~modelserve.core.predictor.Batch`.
"""
