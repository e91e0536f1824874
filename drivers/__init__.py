"""Hardware drivers: scanners, gate actuators, printers, and the transports under them."""
