"""What runs inside a worker process: the agent loop, providers, checkpoints.

The supervisor starts a worker only through `workers.entry:run_worker` and
talks to it only through `protocol` messages and the files in storage.
"""
