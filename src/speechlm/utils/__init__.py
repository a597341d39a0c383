"""Small helpers: devices and precision, atomic file writes."""
