"""One blueprint per API area: request models and thin handlers, no SQL."""
