"""A notes blueprint in its original Flask form and ported to Royal (see README.md)."""
