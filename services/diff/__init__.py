"""What changed between two snapshots, offline from the two files: a schema model of each, compared."""
