"""Reading JSON files whose errors name the file (COCO panoptic JSON, checkpoint metadata)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json(path: Path, error: type[Exception], *, missing: str = "file not found",
              malformed: str = "malformed JSON") -> Any:
    """The parsed content of ``path``.

    Raises:
        error: ``"<path>: <missing>"`` when the file does not exist, ``"<path>: <malformed>
            (<reason>)"`` when it cannot be read or is not valid UTF-8 JSON.
    """
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise error(f"{path}: {missing}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: {malformed} ({exc})") from None
