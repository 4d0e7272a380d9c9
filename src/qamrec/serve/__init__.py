"""The HTTP service (issue 4)."""
