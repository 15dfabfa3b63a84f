"""Triage: many inputs grouped by signature, its cache, and its renderers."""
