"""The command line: `byenatos serve|models|chat|doctor`."""
