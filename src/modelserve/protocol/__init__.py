"""The wire formats: one decoder and one encoder for each, all producing the core's batch."""
