"""The installation run: lease lock, state file and the crash-safe order of one installation's windows."""
