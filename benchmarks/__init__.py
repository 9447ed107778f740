"""Shipped benchmark tables (CSV data; this file only makes them installable)."""
