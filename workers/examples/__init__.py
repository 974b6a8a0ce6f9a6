"""Example agents that ship with agent-supervisor; each is tested and runnable from `configs/`."""
