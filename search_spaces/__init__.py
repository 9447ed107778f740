"""Shipped search spaces (TOML data; this file only makes them installable)."""
