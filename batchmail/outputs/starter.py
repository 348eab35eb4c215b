"""`batchmail init`: a runnable example job written into a folder, never over a file there."""

from __future__ import annotations

import contextlib
from importlib import resources
from pathlib import Path

from batchmail.errors import invalid
from batchmail.load.job import display_path

# The package's example files (batchmail/starter/), each with where it goes in the folder.
# A dot-file is kept under another name: package data leaves dot-files out.
STARTER_FILES: dict[str, str] = {
    "job.yaml": "job.yaml",
    "message.txt.j2": "templates/message.txt.j2",
    "message.html.j2": "templates/message.html.j2",
    "recipients.csv": "recipients.csv",
    "gitignore": ".gitignore",
}


def write_starter(folder: Path) -> list[Path]:
    """Write the example job into `folder` (made if missing) and return the paths written.

    Writes nothing when any of the files exists already: an InvalidJobError names the first.
    """
    targets = {folder / rel: name for name, rel in STARTER_FILES.items()}
    for target in targets:
        if target.exists() or target.is_symlink():
            raise _exists(target)
    written: list[Path] = []
    try:
        for target, name in targets.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("xb") as out:  # "x": a file made meanwhile is not overwritten
                written.append(target)
                out.write(_packaged(name))
    except FileExistsError:
        _remove(written)
        raise _exists(target) from None
    except BaseException:
        _remove(written)
        raise
    return written


def _packaged(name: str) -> bytes:
    return resources.files("batchmail").joinpath("starter", name).read_bytes()


def _exists(target: Path) -> Exception:
    return invalid(display_path(target.absolute()), "exists already: nothing was written")


def _remove(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()
