"""Write each epoch's ``learner.log`` as a row of a CSV file.

:class:`CSVLogger` runs after the other observers (order 90), so its rows hold
everything they logged. The file is flushed after every row: when a fit is
interrupted (Ctrl-C, an error), the epochs already finished are on disk.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import IO
from typing import TYPE_CHECKING

from engine import order
from engine.exceptions import PluginError
from engine.hookspecs import Register
from engine.hookspecs import hookimpl

if TYPE_CHECKING:
    from engine.learner import Learner


class CSVLogger:
    """Append one CSV row per epoch with every value of ``learner.log``.

    The folder is created at the start of each fit; the file is opened when the
    first epoch ends, replacing what an earlier fit wrote (a fit that stops before
    its first epoch ends, on bad input say, leaves it untouched), except when the
    fit resumes at a later epoch (a checkpoint moved ``learner.epoch`` in
    ``begin_fit``): then the rows of the earlier epochs are kept, and the new ones
    follow. A path that is a folder is refused when the plugin is created, or,
    relative to the out_dir, when the fit starts. The header is the keys of the first
    epoch's log; a key that appears later is left out, a key missing from a later
    epoch is left empty, and so is a ``None`` value. Floats are written in full
    precision, so they read back exactly.

    A relative ``path`` is taken inside the learner's ``out_dir``; when the
    learner has no ``out_dir``, a relative path means nothing is written (an
    absolute path is always written).

    :param path: the CSV file, relative to the learner's out_dir or absolute.
    """

    name = "csv_logger"
    order = order.CSV_LOGGER

    def __init__(self, path: str | Path = "metrics.csv") -> None:
        if not isinstance(path, (str, Path)) or not str(path).strip():
            raise ValueError(f"path should be a non-empty file path, got {path!r}")
        if Path(path).is_absolute() and Path(path).is_dir():
            raise ValueError(_folder_message(Path(path)))
        self.path = Path(path)
        """The path as given."""
        self.file_path: Path | None = None
        """Where the current (or last) fit writes, or ``None`` when it writes nothing."""
        self.fieldnames: list[str] | None = None
        """The columns of the file, set by the first epoch of a fit."""
        self._file: IO[str] | None = None
        self._writer: csv.DictWriter[str] | None = None
        self._kept: list[dict[str, str]] = []
        """Rows of the earlier epochs of a resumed fit, written when the file is opened."""

    def resolve(self, out_dir: Path | None) -> Path | None:
        """Where the file goes for a learner whose out_dir is ``out_dir``.

        :param out_dir: the learner's output folder, or ``None``.
        :returns: the file's path, or ``None`` when nothing should be written.
        """
        if self.path.is_absolute():
            return self.path
        if out_dir is None:
            return None
        return Path(out_dir) / self.path

    def begin_fit(self, learner: Learner) -> None:
        self._close()
        self.fieldnames = None
        # in a distributed fit, rank 0 alone writes (even to an absolute path)
        self.file_path = self.resolve(learner.out_dir) if learner.is_main else None
        self._kept = []
        if self.file_path is None:
            return
        if self.file_path.is_dir():
            raise PluginError(f"plugin 'csv_logger': {_folder_message(self.file_path)}")
        self.file_path.parent.mkdir(parents=True, exist_ok=True)
        # resuming (a checkpoint moved the start epoch): keep the earlier epochs
        self._kept = self._rows_before(learner.epoch) if learner.epoch > 0 else []

    def _open(self, path: Path) -> IO[str]:
        """Open the file for this fit, replacing the old one; write the kept rows."""
        handle = path.open("w", newline="", encoding="utf-8")
        if self._kept:
            self.fieldnames = list(self._kept[0])
            self._writer = csv.DictWriter(
                handle, fieldnames=self.fieldnames, restval="", extrasaction="ignore"
            )
            self._writer.writeheader()
            self._writer.writerows(self._kept)
            self._kept = []
        return handle

    def _rows_before(self, epoch: int) -> list[dict[str, str]]:
        """The rows of an existing file for the epochs before ``epoch``."""
        if self.file_path is None or not self.file_path.is_file():
            return []
        with self.file_path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        return [row for row in rows if row.get("epoch", "").isdigit() and int(row["epoch"]) < epoch]

    def after_epoch(self, learner: Learner) -> None:
        if self.file_path is None:
            return
        if self._file is None:
            self._file = self._open(self.file_path)
        if self._writer is None:
            self.fieldnames = list(learner.log)
            self._writer = csv.DictWriter(
                self._file, fieldnames=self.fieldnames, restval="", extrasaction="ignore"
            )
            self._writer.writeheader()
        self._writer.writerow(learner.log)
        self._file.flush()

    def after_fit(self, learner: Learner) -> None:
        self._kept = []
        self._close()

    def _close(self) -> None:
        self._writer = None
        if self._file is not None:
            handle, self._file = self._file, None
            handle.close()


def _folder_message(path: Path) -> str:
    return (
        f"path {str(path)!r} is a folder; give a file path for the CSV rows, "
        f"e.g. -p csv_logger:path={path / 'metrics.csv'}"
    )


@hookimpl
def lookinside_register(register: Register) -> None:
    """Register :class:`CSVLogger`, enabled by default.

    :param register: the registration function bound to this module.
    """
    register(CSVLogger, default=True)
