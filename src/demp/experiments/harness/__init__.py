"""The training harness: one run of `demp train` into a run folder."""
