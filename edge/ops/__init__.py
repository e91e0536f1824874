"""Running on a device: metrics, systemd notify, logs, device identity, health."""
