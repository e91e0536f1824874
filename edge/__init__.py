"""edge: offline gate decisions, counter printing and sync with the central ticketing system."""

__version__ = "0.1.0"
