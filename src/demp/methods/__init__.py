"""Pruning methods other than DemP (the structured baselines), over the same groups and surgery."""
