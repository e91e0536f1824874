"""The edge side of a pretix gate: secrets resolved on the scan path, sync with pretix."""
