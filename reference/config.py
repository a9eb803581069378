"""The assignment config: every term parameter, read from one TOML file.

``load()`` reads ``reference/assignment.toml`` (or the path in ``$HW4_CONFIG``) into frozen
dataclasses. Nothing else in the code base holds a term parameter: a new term is a new config.

>>> cfg = load()
>>> cfg.lab1.lr, cfg.lab1.steps, cfg.lab2.q
(0.02, 200, 70.0)
>>> cfg.rubric["lab2.b"].points
6.0
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ITEM_IDS",
    "Config",
    "ConfigError",
    "Lab1Config",
    "Lab2Config",
    "Lab3Config",
    "DataConfig",
    "GradingConfig",
    "RubricItem",
    "DEFAULT_PATH",
    "REPO_ROOT",
    "load",
    "read_merged",
]

_PACKAGES = Path(__file__).resolve().parent.parent  # the folder holding reference/ and grader/
_BUNDLE = _PACKAGES / "grader" / "_bundle"
#: Where the grader's data lives (``tests/rubric``, ``fixtures/``, the given files in
#: ``student_template/``): the repository in a source checkout (or an editable install); in an
#: installed edition (a wheel, see ``grader.edition``) the ``grader/_bundle`` folder, which holds
#: the same relative layout. Relative paths in a config resolve against it.
REPO_ROOT = _BUNDLE if (_BUNDLE / "EDITION").is_file() else _PACKAGES
DEFAULT_PATH = Path(__file__).resolve().parent / "assignment.toml"

#: The rubric item ids, in gradebook column order (DESIGN section 7).
ITEM_IDS: tuple[str, ...] = (
    *(f"tf.{i}" for i in range(1, 11)),
    *(f"lab1.{c}" for c in "abcdef"),
    *(f"lab2.{c}" for c in "abcde"),
    *(f"lab3.{c}" for c in "abcde"),
)


class ConfigError(ValueError):
    """The assignment config is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class Lab1Config:
    X: tuple[tuple[float, ...], ...]
    y: tuple[float, ...]
    W0: tuple[float, ...]
    lr: float
    steps: int
    k: int
    lambdas: tuple[float, ...]
    prox_thresholds: tuple[float, ...]
    trimmed_thresholds: tuple[float, ...]
    trim: int
    sparse_solution: tuple[float, ...]

    def params(self, method: str) -> tuple[float | None, ...]:
        """The term's parameter values for one Lab 1 method (``(None,)`` when it has none)."""
        return {
            "gd": (None,),
            "projected": (float(self.k),),
            "l1": self.lambdas,
            "proximal": self.prox_thresholds,
            "trimmed": self.trimmed_thresholds,
        }[method]


@dataclass(frozen=True)
class Lab2Config:
    q: float
    iterative_step: float
    iterative_prune_epochs: int
    iterative_fixed_epochs: int
    sparsity_target: float
    finetune_epochs: int
    batch_size: int
    lr: float
    reg: float
    checkpoints: dict[str, str]
    #: steps the global iterative loop may use: the term's, and the one the course's given
    #: global cell says when that differs (2023F: ``q=(epoch+1)*8`` in a 70 % term)
    global_iterative_steps: tuple[float, ...] = ()


@dataclass(frozen=True)
class Lab3Config:
    bits: tuple[int, ...]
    finetune_bits: tuple[int, ...]
    pruned_bits: tuple[int, ...]
    symmetric_bits: tuple[int, ...]
    finetune_epochs: int
    checkpoint: str
    #: the STE must keep pruned weights at 0 (older terms: the mask was an optional bonus)
    zero_mask_required: bool = True

    @property
    def symmetric(self) -> bool:
        """The term has Lab 3 (e), symmetric quantization (older terms' STE had no ``symmetric``)."""
        return bool(self.symmetric_bits)


@dataclass(frozen=True)
class DataConfig:
    fixture: Path
    checkpoint: Path
    fast_train_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    full_scale: dict[str, tuple[float, float]]
    #: fast mode: a training epoch on the fixture sees at most this many batches of at most
    #: ``fast_batch_size`` images (0: no cap)
    fast_batches_per_epoch: int = 0
    fast_batch_size: int = 0
    #: fast mode: the fixture's test split is a fixed class-balanced subset of this many images (0: all)
    fast_test_size: int = 0


@dataclass(frozen=True)
class GradingConfig:
    pip_spec: str
    hidden_visibility: str
    call_timeout_s: float
    import_timeout_s: float
    submission_budget_s: float
    notebook_cell_timeout_s: float
    notebook_budget_s: float
    memory_mb: int
    notebook_memory_mb: int
    max_processes: int
    max_output_bytes: int
    max_file_mb: int
    max_result_mb: int


@dataclass(frozen=True)
class RubricItem:
    """One rubric item: ``points`` in all = ``manual`` + ``notebook`` + ``function`` points."""

    item: str
    title: str
    points: float
    manual: float = 0.0
    notebook: float = 0.0

    @property
    def automatic(self) -> float:
        """Points the grader awards on its own (function tests + notebook checks)."""
        return self.points - self.manual

    @property
    def function(self) -> float:
        """Points earned by the function tests of ``tests/rubric``."""
        return self.points - self.manual - self.notebook


@dataclass(frozen=True)
class Config:
    path: Path
    term: str
    title: str
    lab1: Lab1Config
    lab2: Lab2Config
    lab3: Lab3Config
    data: DataConfig
    grading: GradingConfig
    tf_key: dict[str, str]
    rubric: dict[str, RubricItem] = field(repr=False)
    #: the T/F questions in order; the student edition's config has these and no ``tf_key``
    tf_questions: tuple[str, ...] = ()
    #: the files this config was read from: ``path``, then the ones it extends
    sources: tuple[Path, ...] = ()

    @property
    def total_points(self) -> float:
        return sum(r.points for r in self.rubric.values())


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate an assignment config.

    Args:
        path: the TOML file; default ``$HW4_CONFIG`` or ``reference/assignment.toml``.

    Returns:
        The parsed :class:`Config` (cached per resolved path).

    Raises:
        ConfigError: a missing key, a wrong type, rubric points that do not add up, or an
            unknown rubric item; the message names the file and the key.
    """
    chosen = path if path is not None else os.environ.get("HW4_CONFIG") or DEFAULT_PATH
    return _load_cached(Path(chosen).resolve())


@functools.lru_cache(maxsize=8)
def _load_cached(path: Path) -> Config:
    sources: list[Path] = []
    cfg = _parse(path, _read(path, (), sources))
    return dataclasses.replace(cfg, sources=tuple(sources))


def read_merged(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw TOML tables of a config with everything it extends merged in (what ``load``
    parses): a term file written as a few lines on top of another, as one whole config."""
    return _read(Path(path).resolve(), (), [])


def _read(path: Path, seen: tuple[Path, ...], sources: list[Path]) -> dict[str, Any]:
    """The TOML of ``path``, on top of the file its ``[term] extends`` names (a path relative to
    ``path``): tables are merged key by key, so a term file holds only what differs."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        where = f" (extended by {seen[-1]})" if seen else ""
        raise ConfigError(f"{path}: assignment config not found{where}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    sources.append(path)
    base = raw.get("term", {}).pop("extends", None) if isinstance(raw.get("term"), dict) else None
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f"{path}: [term] extends must be a path, got {base!r}")
    parent = (path.parent / base).resolve()
    if parent in (*seen, path):
        raise ConfigError(f"{path}: [term] extends {base} leads back to itself")
    return _merge(_read(parent, (*seen, path), sources), raw)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        both_tables = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both_tables else value
    return out


def _parse(path: Path, raw: dict[str, Any]) -> Config:
    get = _Getter(path, raw)
    lab1 = Lab1Config(
        X=tuple(tuple(float(v) for v in row) for row in get("lab1", "X")),
        y=tuple(float(v) for v in get("lab1", "y")),
        W0=tuple(float(v) for v in get("lab1", "W0")),
        lr=float(get("lab1", "lr")),
        steps=int(get("lab1", "steps")),
        k=int(get("lab1", "k")),
        lambdas=tuple(float(v) for v in get("lab1", "lambdas")),
        prox_thresholds=tuple(float(v) for v in get("lab1", "prox_thresholds")),
        trimmed_thresholds=tuple(float(v) for v in get("lab1", "trimmed_thresholds")),
        trim=int(get("lab1", "trim")),
        sparse_solution=tuple(float(v) for v in get("lab1", "sparse_solution")),
    )
    n_features = len(lab1.W0)
    if any(len(row) != n_features for row in lab1.X) or len(lab1.X) != len(lab1.y):
        raise ConfigError(
            f"{path}: [lab1] X must be {len(lab1.y)} rows of {n_features} values to match y and W0"
        )
    lab2 = Lab2Config(
        q=float(get("lab2", "q")),
        iterative_step=float(get("lab2", "iterative_step")),
        iterative_prune_epochs=int(get("lab2", "iterative_prune_epochs")),
        iterative_fixed_epochs=int(get("lab2", "iterative_fixed_epochs")),
        sparsity_target=float(get("lab2", "sparsity_target")),
        finetune_epochs=int(get("lab2", "finetune_epochs")),
        batch_size=int(get("lab2", "batch_size")),
        lr=float(get("lab2", "lr")),
        reg=float(get("lab2", "reg")),
        checkpoints=dict(get("lab2", "checkpoints")),
        global_iterative_steps=tuple(float(v) for v in get.optional(
            ("lab2", "global_iterative_steps"), [get("lab2", "iterative_step")])),
    )
    if not 0.0 <= lab2.q <= 100.0:
        raise ConfigError(f"{path}: [lab2] q = {lab2.q} is a percent and must lie in [0, 100]")
    lab3 = Lab3Config(
        bits=tuple(int(b) for b in get("lab3", "bits")),
        finetune_bits=tuple(int(b) for b in get("lab3", "finetune_bits")),
        pruned_bits=tuple(int(b) for b in get("lab3", "pruned_bits")),
        symmetric_bits=tuple(int(b) for b in get("lab3", "symmetric_bits")),
        finetune_epochs=int(get("lab3", "finetune_epochs")),
        checkpoint=str(get("lab3", "checkpoint")),
        zero_mask_required=bool(get.optional(("lab3", "zero_mask_required"), True)),
    )
    full_scale = {k: (float(v[0]), float(v[1])) for k, v in get("data", "full_scale").items()}
    data = DataConfig(
        fixture=REPO_ROOT / str(get("data", "fixture")),
        checkpoint=REPO_ROOT / str(get("data", "checkpoint")),
        fast_train_size=int(get("data", "fast_train_size")),
        mean=tuple(float(v) for v in get("data", "mean")),  # type: ignore[arg-type]
        std=tuple(float(v) for v in get("data", "std")),  # type: ignore[arg-type]
        full_scale=full_scale,
        fast_batches_per_epoch=int(get.optional(("data", "fast_batches_per_epoch"), 0)),
        fast_batch_size=int(get.optional(("data", "fast_batch_size"), 0)),
        fast_test_size=int(get.optional(("data", "fast_test_size"), 0)),
    )
    grading = GradingConfig(**{k: _grading_value(path, k, get("grading", k))
                               for k in GradingConfig.__dataclass_fields__})
    if grading.hidden_visibility not in ("hidden", "after_due_date", "after_published"):
        raise ConfigError(
            f"{path}: [grading] hidden_visibility = {grading.hidden_visibility!r}; "
            "allowed: hidden, after_due_date, after_published"
        )
    tf_raw = get("tf")
    if not isinstance(tf_raw, dict) or not ("key" in tf_raw or "questions" in tf_raw):
        raise ConfigError(f"{path}: [tf] needs a key (the instructor's config) or questions (the student edition's)")
    tf_key = {str(k): str(v).upper() for k, v in tf_raw.get("key", {}).items()}
    for q, v in tf_key.items():
        if v not in ("T", "F"):
            raise ConfigError(f"{path}: [tf] key {q} = {v!r}; allowed: T or F")
    tf_questions = tuple(str(q) for q in tf_raw.get("questions", tf_key))
    if tf_key and list(tf_key) != list(tf_questions):
        raise ConfigError(f"{path}: [tf] questions {list(tf_questions)} differ from the key's {list(tf_key)}")
    rubric: dict[str, RubricItem] = {}
    for item, spec in get("rubric").items():
        if item not in ITEM_IDS:
            raise ConfigError(f"{path}: [rubric] unknown item {item!r}; items are {', '.join(ITEM_IDS)}")
        r = RubricItem(
            item=item,
            title=str(spec.get("title", item)),
            points=float(spec["points"]),
            manual=float(spec.get("manual", 0)),
            notebook=float(spec.get("notebook", 0)),
        )
        if r.function < 0 or r.manual < 0 or r.notebook < 0:
            raise ConfigError(
                f"{path}: [rubric] {item}: manual ({r.manual}) + notebook ({r.notebook}) "
                f"exceed points ({r.points})"
            )
        rubric[item] = r
    missing = [i for i in ITEM_IDS if i not in rubric]
    if missing:
        raise ConfigError(f"{path}: [rubric] lacks items {', '.join(missing)}")
    rubric = {i: rubric[i] for i in ITEM_IDS}
    return Config(
        path=path,
        term=str(get("term", "name")),
        title=str(get("term", "title")),
        lab1=lab1,
        lab2=lab2,
        lab3=lab3,
        data=data,
        grading=grading,
        tf_key=tf_key,
        rubric=rubric,
        tf_questions=tf_questions,
    )


def _grading_value(path: Path, key: str, value: Any) -> Any:
    """``$HW4_GRADING_<KEY>`` overrides ``[grading] key`` (precedence: file < environment), so a
    test run or a slow machine can change a limit without a second copy of the term."""
    env = os.environ.get(f"HW4_GRADING_{key.upper()}")
    if env is None:
        return value
    try:
        return type(value)(env) if not isinstance(value, bool) else env.lower() in ("1", "true", "yes")
    except ValueError:
        raise ConfigError(f"{path}: $HW4_GRADING_{key.upper()}={env!r} is not a {type(value).__name__}") from None


class _Getter:
    def __init__(self, path: Path, raw: dict[str, Any]):
        self.path, self.raw = path, raw

    def __call__(self, *keys: str) -> Any:
        node: Any = self.raw
        for depth, key in enumerate(keys):
            if not isinstance(node, dict) or key not in node:
                where = "[" + ".".join(keys[: depth or 1]) + "]"
                raise ConfigError(f"{self.path}: missing key {'.'.join(keys)} (looked in {where})")
            node = node[key]
        return node

    def optional(self, keys: tuple[str, ...], default: Any) -> Any:
        """``keys``' value, or ``default`` when the file does not set it (keys added after the
        first terms were written)."""
        try:
            return self(*keys)
        except ConfigError:
            return default
