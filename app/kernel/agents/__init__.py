"""The agent kernel: agents as durable processes (process table, lifecycle, quotas, paged
contexts), their runs on DBOS, and the tool-calling loop that kernel-run agents execute."""
