"""Gate actuators: relays, lights, buzzers, and a console actuator for demos."""
