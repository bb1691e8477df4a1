"""Build the standalone bundle and the installer for the current OS: `python -m installers build`."""
