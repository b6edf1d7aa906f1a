"""Business logic: plain async functions taking their dependencies (``db`` first) as arguments."""
