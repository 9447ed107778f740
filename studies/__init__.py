"""Shipped study configs (TOML data; this file only makes them installable)."""
