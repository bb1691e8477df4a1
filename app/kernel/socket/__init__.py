"""The socket: aliases and hot swaps, routing and failover, local-model residency, sessions."""
