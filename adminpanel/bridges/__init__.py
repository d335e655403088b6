"""Running the bridges: one per gateway, feeding ingest; their process, commands and recovery."""
