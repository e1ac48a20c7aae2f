"""Integrations with training frameworks (imported on demand; their packages are optional)."""
