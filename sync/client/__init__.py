"""The edge's sync client: bootstrap, pull, pushes, journal upload, bundle import."""
