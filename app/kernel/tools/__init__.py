"""Tools agents and the assistant can call: one interface for built-in tools (and, later, MCP servers)."""
