"""Training: fit an estimator on a data set, report on it, publish it to the store."""
