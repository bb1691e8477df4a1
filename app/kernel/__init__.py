"""The ByenatOS kernel: asyncio only, never Qt. The UI and the CLI sit on top of it."""
