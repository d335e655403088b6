"""The audit log: the hash chain (its only writer), its queries and its pages."""
