"""Running the bridges: one per gateway, feeding ingest, and the way back to them.

``supervisor`` runs the bridges, ingest's writes, the flag tick and the
broadcaster in one process; ``child_process`` runs that process beside the
demo's web server; ``command_client`` (web side) and ``command_server``
(bridge side) carry operator actions to a gateway's bridge; ``recovery`` acts
on its own, beside the bridges; ``checkpoints`` keeps SQLite's checkpoints
off ingest's commits.
"""
