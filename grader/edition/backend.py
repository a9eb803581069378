"""The project's PEP 517 build backend: ``pip install .`` builds an edition, with no build dependency.

``pyproject.toml`` names it (``build-backend = "grader.edition.backend"``, ``backend-path = ["."]``).

* ``build_wheel``: the full edition (:func:`grader.edition.contents.full_files`); with
  ``--config-settings edition=student`` the student edition of the default term (it needs the
  term's recorded values, which ``hw4grade assign`` writes).
* ``build_editable`` (``pip install -e .``): a ``.pth`` file that puts the checkout on ``sys.path``,
  and the console script.
* ``build_sdist``: the files the full edition is built from.

Standard library only (``tomllib``, ``zipfile``, ``tarfile``), so a build needs no network.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from grader.edition.wheel import Metadata, project_metadata, wheel_bytes, wheel_name

__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
]

STUDENT_NAME = "hw4grade-student"
#: what an sdist carries besides the full edition's sources
_SDIST_EXTRA = ("pyproject.toml", "README.md", "requirements.txt")


def _root() -> Path:
    return Path.cwd()


def metadata(edition: str, root: Path | None = None) -> Metadata:
    """The distribution's metadata: the project's, renamed for the student edition, whose long
    description is the student README and which has no extras."""
    root = root or _root()
    meta = project_metadata(root / "pyproject.toml")
    if edition == "student":
        readme = (root / "student_template" / "README.md")
        return project_metadata(root / "pyproject.toml", name=STUDENT_NAME, extras={},
                                summary=f"{meta.summary} (student edition: the public tests)",
                                readme=readme.read_text(encoding="utf-8") if readme.is_file() else "")
    return meta


def get_requires_for_build_wheel(config_settings: dict | None = None) -> list[str]:
    return []


def get_requires_for_build_sdist(config_settings: dict | None = None) -> list[str]:
    return []


def get_requires_for_build_editable(config_settings: dict | None = None) -> list[str]:
    return []


def build_wheel(wheel_directory: str, config_settings: dict | None = None,
                metadata_directory: str | None = None) -> str:
    from grader.edition.contents import full_files, student_files

    edition = (config_settings or {}).get("edition", "full")
    root = _root()
    if edition == "student":
        files = student_files(root, root / "reference" / "assignment.toml")
    elif edition == "full":
        files = full_files(root)
    else:
        raise ValueError(f"--config-settings edition={edition!r}: the editions are 'full' and 'student'")
    meta = metadata(edition, root)
    out = Path(wheel_directory) / wheel_name(meta)
    out.write_bytes(wheel_bytes(meta, files))
    return out.name


def build_editable(wheel_directory: str, config_settings: dict | None = None,
                   metadata_directory: str | None = None) -> str:
    root = _root()
    meta = metadata("full", root)
    files = {f"__editable__.{meta.dist}.pth": f"{root.resolve()}\n".encode()}
    out = Path(wheel_directory) / wheel_name(meta)
    out.write_bytes(wheel_bytes(meta, files))
    return out.name


def build_sdist(sdist_directory: str, config_settings: dict | None = None) -> str:
    from grader.edition.contents import BUNDLE, full_files

    root = _root()
    meta = metadata("full", root)
    base = f"{meta.dist}-{meta.version}"
    files = {}
    for rel, data in full_files(root).items():
        files[rel.removeprefix(f"{BUNDLE}/")] = data  # back to the checkout's layout
    files.pop("EDITION", None)
    for rel in _SDIST_EXTRA:
        if (root / rel).is_file():
            files[rel] = (root / rel).read_bytes()
    files["PKG-INFO"] = meta.text().encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for rel in sorted(files):
            info = tarfile.TarInfo(f"{base}/{rel}")
            info.size, info.mode, info.mtime = len(files[rel]), 0o644, 1577836800
            tar.addfile(info, io.BytesIO(files[rel]))
    name = f"{base}.tar.gz"
    (Path(sdist_directory) / name).write_bytes(buf.getvalue())
    return name
