"""The transport-neutral data plane: decode, validate, predict, encode, for every entry point."""
