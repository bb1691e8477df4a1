"""`python -m installers build [--skip-bundle] [--no-installer]`: the bundle, then this OS's installer."""

import sys

from installers.build import main

sys.exit(main())
