"""How layers are cut: the per-layer-type rules, in-place slicing, optimizer state."""
