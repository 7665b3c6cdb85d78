"""The server side: the target connection and its tools (TLS relay, lock watch, catalog queries), and
what runs against a database: snapshot (pg_dump), restore (psql replay), clone snapshots, clearing."""
