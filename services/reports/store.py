"""Where reports are written: a local folder or the S3 lake bucket (MinIO locally), as <root>/<yyyy-mm>/ with the
files, then manifest.json (written last: a folder whose manifest lists a file has that file), and a copy of every
run's manifest under runs/, so a later run of the month finds the last one and shows its late corrections.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from typing import Any

from pyarrow import fs

from services.api import lake
from telemetry.settings import Settings

PREFIX = "reports"


class Store:
    """A report root on a pyarrow filesystem; paths are '<root>/<yyyy-mm>/<name>'."""

    def __init__(self, filesystem: fs.FileSystem, root: str, uri: str) -> None:
        self.filesystem, self.root, self.uri = filesystem, root.rstrip("/"), uri.rstrip("/")

    @classmethod
    def local(cls, directory: str) -> "Store":
        path = os.path.abspath(directory)
        return cls(fs.LocalFileSystem(), path, path)

    @classmethod
    def s3(cls, settings: Settings) -> "Store":
        """s3://<LAKE_BUCKET>/reports with the settings' endpoint and keys (the lake's own filesystem)."""
        filesystem, root = lake.filesystem(replace(settings, lake_uri=f"s3://{settings.lake_bucket}/{PREFIX}"))
        return cls(filesystem, root, f"s3://{root}")

    def _path(self, month: str, name: str) -> str:
        return f"{self.root}/{month}/{name}"

    def write(self, month: str, name: str, data: bytes) -> str:
        path = self._path(month, name)
        self.filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with self.filesystem.open_output_stream(path) as out:
            out.write(data)
        return f"{self.uri}/{month}/{name}"

    def read(self, month: str, name: str) -> bytes | None:
        path = self._path(month, name)
        if self.filesystem.get_file_info(path).type != fs.FileType.File:
            return None
        with self.filesystem.open_input_stream(path) as stream:
            return stream.read()

    def last_manifest(self, month: str) -> dict[str, Any] | None:
        """The manifest of the month's last run (None: no run yet); OSError naming the file when it is unreadable."""
        data = self.read(month, "manifest.json")
        if data is None:
            return None
        try:
            manifest = json.loads(data)
        except ValueError as exc:
            manifest = exc
        if not isinstance(manifest, dict) or not isinstance(manifest.get("generated_at"), str):
            raise OSError(f"{self.uri}/{month}/manifest.json is not a report manifest: move it aside (the month's "
                          "next report then shows no corrections) or restore it from runs/")
        return manifest
