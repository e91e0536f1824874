"""Talking to the central ticketing system."""
