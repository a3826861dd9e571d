"""hdist's Hydra sweeper (``hydra/sweeper=hdist``, the default of conf/config.yaml)."""
