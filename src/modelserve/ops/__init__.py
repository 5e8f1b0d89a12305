"""Operations: metrics, logs, the observability middleware and the garbage-collector helper."""
