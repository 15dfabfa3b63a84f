"""The report: the verdict, its signature, and the renderers (text, JSON, Markdown)."""
