"""The SQLite store and its migrations, with a narrow typed API per owner."""
