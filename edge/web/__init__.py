"""HTTP serving shared by every server of the project: limits, strict bodies (docs/security.md)."""
