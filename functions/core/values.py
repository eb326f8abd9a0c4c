"""Plain Python values from numpy ones: what JSON, DynamoDB and comparisons with Python values take."""
from __future__ import annotations

from typing import Any

import numpy as np


def plain(v: Any) -> Any:
    """A numpy scalar (int64 label, float64, numpy str, ...) as the Python value ``.item()`` gives;
    anything else unchanged."""
    return v.item() if isinstance(v, np.generic) else v
