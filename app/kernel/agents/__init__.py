"""The agent kernel: agents as durable processes (process table, lifecycle, quotas, paged
contexts), their runs on DBOS, and the tool-calling loop that kernel-run agents execute."""

# The header with which an external agent groups its gateway calls into one run (one process).
# Here, not in runtime.py: the gateway reads it on every inference request without importing
# the agent kernel.
RUN_HEADER = "X-ByenatOS-Run"
