"""Audio input/output shared by every task, the HTTP API and the web UI."""
