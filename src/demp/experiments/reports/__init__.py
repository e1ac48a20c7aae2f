"""Tables and matplotlib plots of runs (matplotlib is imported only when plotting)."""
