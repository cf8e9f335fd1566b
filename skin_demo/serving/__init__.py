"""Serving: the registry of models, loading them (local or pinned Hub), inference engines, the service and the UI."""
