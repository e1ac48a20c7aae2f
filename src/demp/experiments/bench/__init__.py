"""``demp bench``: DemP against the baselines, side by side on the same budget."""
