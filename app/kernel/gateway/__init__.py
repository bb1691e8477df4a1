"""The local HTTP gateway every app on the machine talks to."""
