"""The `ember` command: a client of the public HTTP API, plus `ember server`."""
