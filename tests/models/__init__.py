"""Tests of the torch net (nas_dil.models)."""
