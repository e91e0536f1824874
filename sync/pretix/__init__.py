"""The pretix connector: pretix_sig1 secrets, REST sync, check-in upload."""
