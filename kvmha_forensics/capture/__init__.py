"""Capture: the steps, the memory dump, and the bundle they write (and readers verify)."""
