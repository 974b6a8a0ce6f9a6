"""agent-supervisor: the parent process of a team of agent workers.

Config, CLI, process tree, signals, interrupt fan-out, event aggregation and
console. Importing this package loads nothing heavy; the modules that do the
work are imported by the command that needs them.
"""

__version__ = "0.1.0"
