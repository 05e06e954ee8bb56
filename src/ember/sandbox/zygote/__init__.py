"""The fork server and the jail it applies. Runs under the function's Python: stdlib only."""
