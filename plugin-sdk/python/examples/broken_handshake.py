#!/usr/bin/python3
"""A broken plugin for tests: prints a banner where the handshake belongs."""
import sys
import time

print("hello from a python plugin", flush=True)
time.sleep(3600)  # the host kills it
sys.exit(0)
