"""Run a team with a test-double worker entry, as the CLI would (own process).

    python tests/run_entry.py CONFIG ENTRY     (exit code = the run's)

The supervisor's process-wide duties (child subreaper, reaping orphans) can
only be tested in a process of its own, not inside pytest's.
"""

import sys

from supervisor.config import load_config
from supervisor.terminal.console import Console
from supervisor.runtime.process import worker_context
from supervisor.runtime.run import run_team

if __name__ == "__main__":
    worker_context()
    console = Console(sys.stderr)
    config = load_config(sys.argv[1])
    outcome = run_team(config, entry=sys.argv[2], own_process=True, sinks=[console])
    console.finish(outcome, str(config.storage), str(config.source))
    sys.exit(outcome.exit_code)
