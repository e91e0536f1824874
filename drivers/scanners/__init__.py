"""Scanners: keyboard-wedge (evdev), serial, NFC readers, and line input for demos."""
