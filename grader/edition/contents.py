"""What each edition holds: archive name -> bytes, read from a source checkout.

Both editions lay their data out in ``grader/_bundle/`` with the repository's relative paths
(``tests/rubric/...``, ``fixtures/...``, ``student_template/<given file>``), where
``reference.config.REPO_ROOT`` finds it once installed. The lists are explicit; nothing is
included because a glob happened to match it.

The student edition (see :mod:`grader.edition`) is derived, not maintained:

* rubric tests: :func:`grader.edition.shake.shake` keeps the public ones and what they use;
* the config: the term's, with the T/F key replaced by the list of questions
  (:func:`student_config`);
* the recorded values and the hidden tests' count: ``<config>.recorded.json``
  (:mod:`grader.oracle`), which ``hw4grade assign`` records;
* the grader's runtime without the instructor tooling (:data:`STUDENT_SKIPS`).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from grader.edition.shake import shake

__all__ = ["BUNDLE", "STUDENT_SKIPS", "EditionError", "full_files", "student_config", "student_files"]

BUNDLE = "grader/_bundle"
#: the given files, as students get them (the sandbox and the trusted float model use them)
GIVEN = ("resnet20.py", "train_util.py", "FP_layers.py")
#: grader modules the student edition leaves out: instructor tooling that needs the source tree,
#: the reference or the key (their commands say so in the student edition, see grader.cli)
STUDENT_SKIPS = (
    "grader/assign.py",
    "grader/dask_executor.py",
    "grader/outputs/gradescope.py",
    "grader/edition/backend.py",
    "grader/edition/build.py",
    "grader/edition/contents.py",
    "grader/edition/record.py",
    "grader/edition/scan.py",
    "grader/edition/shake.py",
    "grader/edition/wheel.py",
)
#: reference modules the student edition carries: the config loader and the fixture data loader
STUDENT_REFERENCE = ("reference/__init__.py", "reference/config.py", "reference/data.py")
_SKIP_PARTS = {"__pycache__", ".pytest_cache", ".hypothesis", "_bundle"}


class EditionError(RuntimeError):
    """An edition cannot be built from this tree (a missing file, a leak, a bad public test)."""


def _tree(root: Path, rel: str) -> dict[str, bytes]:
    base = root / rel
    if not base.is_dir():
        raise EditionError(f"{base}: missing; an edition needs it")
    out = {}
    for path in sorted(base.rglob("*")):
        parts = path.relative_to(root).parts
        if path.is_file() and not path.is_symlink() and not _SKIP_PARTS.intersection(parts) \
                and path.suffix not in (".pyc", ".tmp"):
            out["/".join(parts)] = path.read_bytes()
    return out


def _file(root: Path, rel: str) -> bytes:
    path = root / rel
    if not path.is_file():
        raise EditionError(f"{path}: missing; an edition needs it")
    return path.read_bytes()


def _data_files(root: Path, cfg_raw: dict, config_path: Path) -> dict[str, bytes]:
    """The fixture dataset and checkpoint the term names, at their bundle paths."""
    out = {}
    for key in ("fixture", "checkpoint"):
        rel = cfg_raw["data"][key]
        src = Path(rel) if Path(rel).is_absolute() else root / rel
        if not src.is_file():
            raise EditionError(f"{config_path}: [data] {key} = {rel!r}: no such file")
        out[f"{BUNDLE}/{_bundle_data_path(key, rel)}"] = src.read_bytes()
    return out


def _bundle_data_path(key: str, rel: str) -> str:
    name = Path(rel).name
    return f"fixtures/data/{name}" if key == "fixture" else f"fixtures/{name}"


def full_files(root: Path) -> dict[str, bytes]:
    """The full edition: the grader, the reference, every rubric test, the fixtures."""
    files = {**_tree(root, "grader"), **_tree(root, "reference")}
    bundle = {"EDITION": b"full\n", "tests/conftest.py": _file(root, "tests/conftest.py")}
    for rel, data in _tree(root, "tests/rubric").items():
        bundle[rel] = data
    for name in GIVEN:
        bundle[f"student_template/{name}"] = _file(root, f"student_template/{name}")
    # the project files `hw4grade gradescope` puts in its bundle (setup.sh installs from them)
    for rel in ("fixtures/pretrained_model.pt", "fixtures/pretrained_model.json", "pyproject.toml",
                "requirements.txt"):
        bundle[rel] = _file(root, rel)
    bundle.update(_tree(root, "fixtures/data"))
    files.update({f"{BUNDLE}/{rel}": data for rel, data in bundle.items()})
    return files


def student_files(root: Path, config_path: Path) -> dict[str, bytes]:
    """The student edition of the term ``config_path`` (see the module doc).

    Raises:
        EditionError: the term has no recorded values (run ``hw4grade assign``), or a public test
            cannot be separated from the reference (the message names it).
    """
    from grader.edition.shake import ShakeError
    from grader.oracle import table_path
    from reference.config import read_merged

    raw = read_merged(config_path)  # a term file that extends another, as one whole config
    table = table_path(config_path)
    if not table.is_file():
        raise EditionError(f"{table}: missing; `hw4grade assign` records the reference's values for the "
                           "public tests there")
    files = {rel: data for rel, data in _tree(root, "grader").items() if rel not in STUDENT_SKIPS}
    for rel in STUDENT_REFERENCE:
        files[rel] = _file(root, rel)
    files["reference/assignment.toml"] = student_config(raw).encode()
    files["reference/assignment.recorded.json"] = table.read_bytes()
    rubric = root / "tests" / "rubric"
    sources = {p.name: p.read_text(encoding="utf-8") for p in sorted(rubric.glob("*.py")) if p.name != "conftest.py"}
    try:
        shaken = shake(sources)
    except ShakeError as exc:
        raise EditionError(str(exc)) from None
    bundle = {"EDITION": b"student\n", "tests/conftest.py": _file(root, "tests/conftest.py"),
              "tests/rubric/conftest.py": _file(root, "tests/rubric/conftest.py")}
    bundle.update({f"tests/rubric/{name}": text.encode() for name, text in shaken.files.items()})
    for name in GIVEN:
        bundle[f"student_template/{name}"] = _file(root, f"student_template/{name}")
    files.update({f"{BUNDLE}/{rel}": data for rel, data in bundle.items()})
    files.update(_data_files(root, raw, config_path))
    return files


# ----------------------------------------------------------------------------- the student's config


def student_config(raw: dict[str, Any]) -> str:
    """The term's config for the student edition: the same, except ``[tf] key`` (the answers)
    becomes ``[tf] questions`` (their order), and the data paths point into the bundle."""
    data = json.loads(json.dumps(raw))  # a deep copy of plain data
    tf = data.setdefault("tf", {})
    key = tf.pop("key", None)
    if key is not None:
        tf["questions"] = list(key)
    for name in ("fixture", "checkpoint"):
        data["data"][name] = _bundle_data_path(name, data["data"][name])
    head = ("# The assignment config of the student edition (generated by `hw4grade assign` from the\n"
            "# instructor's; the True/False key is not in it).\n")
    text = head + _toml(data)
    tomllib.loads(text)  # what we wrote must read back
    return text


def _toml(data: dict[str, Any]) -> str:
    lines: list[str] = []
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    lines += [f"{_key(k)} = {_value(v)}" for k, v in scalars.items()]
    for name, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{_key(name)}]"]
            lines += [f"{_key(k)} = {_value(v)}" for k, v in table.items()]
    return "\n".join(lines).lstrip("\n") + "\n"


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    raise EditionError(f"student config: cannot write a value of type {type(v).__name__}")
