"""The gate: parse, facts, decide, journal (gate), and scanners to actuator (lane)."""
