"""The reference central system: `edge-central` (docs/protocol.md, README "Sync")."""
