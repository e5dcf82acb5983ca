"""Make the model tests' helper modules (``copersona_testkit``, ``grag/grag_testkit``) importable."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _path in (_HERE, _HERE / "grag"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
