#!/usr/bin/python3
"""A broken plugin for tests: fails before its handshake with exit code 3."""
import sys

print("[ERROR] cannot open /nonexistent/config.yaml", file=sys.stderr)
print("[ERROR] python plugin giving up", file=sys.stderr, flush=True)
sys.exit(3)
