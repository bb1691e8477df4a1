"""The sandbox run_code uses: a subprocess with CPU, memory, time, output and process limits, no
network, and a temporary folder of its own; bubblewrap where it works, `unshare -n` else, rlimits
only as the last resort. Every result says which isolation was used, and never claims more.
"""

from app.kernel.tools.sandbox.isolation import CONFINEMENTS, ENV, Confinement, Isolation, choose, problem
from app.kernel.tools.sandbox.limits import Limits
from app.kernel.tools.sandbox.runner import LANGUAGES, RunResult, run

__all__ = ["CONFINEMENTS", "ENV", "LANGUAGES", "Confinement", "Isolation", "Limits", "RunResult", "choose",
           "problem", "run"]
