"""Notebooks written for Google Colab or a lab machine, run in the grader's sandbox (kernel side).

Hand-ins mount Google Drive (``from google.colab import drive; drive.mount('/content/drive')``),
read the checkpoint from ``/content/drive/My Drive/<folder>/pretrained_model.pt``, write their
models there, ``%cd`` into that folder, and save figures into folders they never handed in
(``Figures/lab3b.pdf``). Run as written here, every cell after the first such line fails. So,
inside the kernel (``install(emit, known)``):

* **google.colab** is a stand-in package: ``drive.mount`` and ``drive.flush_and_unmount`` do
  nothing, ``files.download``/``files.upload`` do nothing (upload returns ``{}``);
* **paths** (every ``open``, so ``torch.save``/``torch.load``, ``np.save``/``np.load`` and
  ``savefig`` too): a file opened for reading that does not exist where the notebook says, but
  whose name is one the grader supplies or the notebook itself wrote (``pretrained_model.pt``,
  the checkpoints), is read from where that file is; a checkpoint the grader collects
  (``net_after_finetune.pt``, ...) is written into the notebook's own folder wherever the notebook
  puts it; any other file written into a folder that does not exist goes into the notebook's
  folder when that folder is elsewhere (``/content/drive/...``), and the folder is created when
  it lies inside the notebook's folder (``Figures/``);
* **os.chdir** into a folder that does not exist (``%cd /content/drive/My Drive/HW4``) stays in
  the notebook's folder.

Each mapping is reported through ``emit("portability", what=..., path=..., to=...)`` once per
path; the grader turns them into warnings, never deductions. Paths that exist are never touched.

Loaded by the harness from the staged code folder: imports only the standard library.
"""

from __future__ import annotations

import builtins
import functools
import os
import sys
import types

__all__ = ["install"]

_WRITE_MODES = set("wax+")


def install(emit, known: set[str], collected: set[str], home: str | None = None):
    """Install the stand-ins; ``known``: names of files the grader supplies in ``home`` (the
    notebook's folder, default the current one); ``collected``: names of the files the grader
    collects from ``home`` after the run. Returns ``resolve(path, mode) -> path`` for writers
    that bypass ``open`` (``torch.save`` writes its zip file from C++)."""
    state = _Paths(emit, os.path.abspath(home or os.getcwd()), known, collected)
    _install_colab(emit)
    original_open = builtins.open

    @functools.wraps(original_open)
    def open_(file, mode="r", *args, **kwargs):
        if isinstance(file, str | os.PathLike) and not isinstance(file, int):
            file = state.resolve(os.fspath(file), mode if isinstance(mode, str) else "r")
        return original_open(file, mode, *args, **kwargs)

    builtins.open = open_
    import io

    io.open = open_  # the same function under its other name

    original_chdir = os.chdir

    @functools.wraps(original_chdir)
    def chdir(path):
        target = os.fspath(path) if isinstance(path, str | os.PathLike) else path
        if isinstance(target, str) and not os.path.isdir(target):
            state.note("chdir", target, state.home)
            return None
        return original_chdir(path)

    os.chdir = chdir
    return state.resolve


class _Paths:
    def __init__(self, emit, home: str, known: set[str], collected: set[str]):
        self.emit, self.home, self.collected = emit, home, set(collected)
        self.where = {name: os.path.join(home, name) for name in known}  # file name -> real path
        self.noted: set[tuple[str, str]] = set()

    def note(self, what: str, path: str, to: str) -> None:
        if (what, path) not in self.noted:
            self.noted.add((what, path))
            self.emit("portability", what=what, path=path[:300], to=to[:300])

    def resolve(self, path: str, mode: str) -> str:
        if isinstance(path, bytes) or not path:
            return path
        writing = bool(_WRITE_MODES & set(mode))
        name = os.path.basename(path)
        if not writing:
            if not os.path.exists(path) and name in self.where and os.path.exists(self.where[name]):
                self.note("read", path, self.where[name])
                return self.where[name]
            return path
        folder = os.path.dirname(os.path.abspath(path))
        mapped = os.path.join(self.home, name)
        if name in self.collected and os.path.abspath(path) != mapped:
            self.note("write", path, mapped)
            path, folder = mapped, self.home
        if not os.path.isdir(folder):
            if os.path.commonpath([folder, self.home]) == self.home:
                try:
                    os.makedirs(folder, exist_ok=True)
                    self.note("folder", os.path.dirname(path), folder)
                except OSError:
                    pass
            if not os.path.isdir(folder):  # /content/drive/..., or a folder that cannot be made
                self.note("write", path, mapped)
                path = mapped
        self.where[name] = os.path.abspath(path)
        return path


def _install_colab(emit) -> None:
    """``google.colab`` (``drive``, ``files``, ``output``) as a package that does nothing."""
    if "google.colab" in sys.modules:
        return

    def module(name: str, **attrs) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        sys.modules[name] = mod
        return mod

    def mount(mountpoint="/content/drive", *args, **kwargs):
        emit("portability", what="mount", path=str(mountpoint)[:300], to="")

    drive = module("google.colab.drive", mount=mount, flush_and_unmount=lambda *a, **k: None)
    files = module("google.colab.files", download=lambda *a, **k: None, upload=lambda *a, **k: {})
    output = module("google.colab.output", clear=lambda *a, **k: None,
                    enable_custom_widget_manager=lambda *a, **k: None)
    colab = module("google.colab", drive=drive, files=files, output=output)
    colab.__path__ = []  # a package: `import google.colab.drive` works
    try:
        import google  # a namespace package some libraries install (protobuf)
    except ImportError:
        google = module("google")
        google.__path__ = []
    google.colab = colab  # type: ignore[attr-defined]
