"""Examples of apps built on Royal (not part of the installed package)."""
