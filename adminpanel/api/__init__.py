"""The JSON API v1 and its Bearer tokens."""
