"""The snapshot directory: naming, metadata, listing, validation, retention, compression, and the
directory's own operations (delete, protect, cleanup)."""
