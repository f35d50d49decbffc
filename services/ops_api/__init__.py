"""ops_api: the HTTP face for people and tools (kill switch, status, DoD reports) and the recorder."""
