"""PyInstaller runtime hook: point the kernel at the embedding model the bundle carries.

Runs before the app's own code in the frozen build only. The user's own choice (the variable set
in their environment) wins; otherwise the model shipped under <bundle>/embedding/ is used, so the
installed app works offline without ever running scripts/fetch_embedding_model.py.
"""

import os
import sys
from pathlib import Path

_bundle = Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent))
_model = _bundle / "embedding" / "all-MiniLM-L6-v2"
if _model.is_dir():
    os.environ.setdefault("BYENATOS_EMBED_MODEL_DIR", str(_model))
# The frozen app never reaches the network for LiteLLM's price map: the bundled copy is the one.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
