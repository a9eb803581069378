"""The notebook machinery in parts, without a full homework run (seconds, not minutes).

* claims: what counts as a printed accuracy or sparsity, at which precision;
* the Lab 1 figure matcher on synthetic figures;
* the harvest: links, FIFOs and oversized files the sandbox leaves are never read;
* the cache key and the notebook selection;
* one small sandboxed run of synthetic notebooks: fixture data, no loader workers, CPU only,
  seeds, a cell error and a cell timeout that do not stop the run, capped output.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pytest

from grader.discover import discover
from grader.notebooks import RunOptions, checks, harness, run_notebooks, select_notebooks
from grader.notebooks.evidence import CellRecord, NotebookRun, accuracy_claims, sparsity_claims
from grader.notebooks.run import _harvest_one, cache_key
from reference.config import load

CFG = load()
LAYERS = ["head_conv.0.conv", "body_op.0.conv1.0.conv", "final_fc.linear"]


# ----------------------------------------------------------------------------- claims


@pytest.mark.parametrize(("line", "value", "tolerance"), [
    ("Test Loss=0.0454, Test accuracy=0.9900", 0.99, 0.00005),
    ("accuracy: 91.5%", 0.915, 0.0005),
    ("best val acc = 0.87", 0.87, 0.005),
    ("Accuracy 92", 0.92, 0.005),  # a percentage without the sign
    ("acc=0.123456789", 0.123456789, 1e-5),  # printed at full precision: the minimum tolerance
])
def test_accuracy_claims_read_the_value_at_its_printed_precision(line, value, tolerance):
    (claim,) = accuracy_claims(line)
    assert claim.value == pytest.approx(value)
    assert claim.tolerance == pytest.approx(tolerance)


@pytest.mark.parametrize("line", [
    "[Step=50]\tLoss=0.3012\tTrain acc=0.8123",  # training accuracy is not a test claim
    "Epoch: 3",
    "Saving...",
])
def test_lines_without_a_test_accuracy_are_not_claims(line):
    assert accuracy_claims(line) == []


def test_sparsity_claims_name_their_layer_or_the_total():
    (layer,) = sparsity_claims("Sparsity of body_op.0.conv1.0.conv: 0.6998", LAYERS)
    assert (layer.layer, layer.value) == ("body_op.0.conv1.0.conv", pytest.approx(0.6998))
    (total,) = sparsity_claims("Total sparsity: 70.0%", LAYERS)
    assert (total.layer, total.value, total.tolerance) == ("total", pytest.approx(0.7), pytest.approx(0.0005))
    (unnamed,) = sparsity_claims("sparsity 0.5", LAYERS)
    assert unnamed.layer is None
    assert sparsity_claims("Sparsity of head_conv.0.conv: n/a", LAYERS) == []


def test_a_rounded_claim_agrees_and_a_wrong_one_does_not():
    (claim,) = sparsity_claims("Total sparsity: 0.70", LAYERS)
    assert claim.agrees(0.6996)  # 0.70 is 0.6996 printed to 2 decimals
    assert not claim.agrees(0.69)
    assert not claim.agrees(0.0)


@pytest.mark.parametrize(("line", "layer", "value"), [
    # the course's own line, and what real hand-ins print instead (issue 11)
    ("Sparsity of body_op.0.conv1.0.conv: 0.6990740740740741", "body_op.0.conv1.0.conv", 0.699074),
    ("body_op.0.conv1.0.conv: 0.7000", "body_op.0.conv1.0.conv", 0.7),
    ("head_conv.0.conv 0.70", "head_conv.0.conv", 0.7),
    ("final_fc.linear: 448/640 zeros = 70.00%", "final_fc.linear", 0.7),
    ("Layer final_fc.linear sparsity 70.0 %", "final_fc.linear", 0.7),
    ("Total sparsity of: 0.7", "total", 0.7),
    ("Total: 70.00%", "total", 0.7),
    ("overall = 0.6995", "total", 0.6995),
])
def test_sparsity_is_read_from_every_format_real_hand_ins_print(line, layer, value):
    (claim,) = sparsity_claims(line, LAYERS)
    assert (claim.layer, claim.value) == (layer, pytest.approx(value, abs=1e-6))


@pytest.mark.parametrize("line", [
    "body_op.0.conv1.0.conv: torch.Size([16, 16, 3, 3])",  # a shape, not a sparsity
    "Total params: 272474",  # a count
    "final_fc.linear zeros: 448",
    "Test Loss=0.3012, Test acc=0.9100",
])
def test_counts_shapes_and_other_numbers_are_not_sparsity_claims(line):
    assert sparsity_claims(line, LAYERS) == []


def _run_with(tmp_path: Path, stdout: str, events: list[dict]) -> tuple[NotebookRun, CellRecord]:
    run = NotebookRun("hw4", "hw4.ipynb", tmp_path, status="finished")
    cell = CellRecord(index=4, source="", cell_type="code", status="ok", ordinal=3, stdout=stdout)
    run.cells.append(cell)
    run.events = events
    return run, cell


def test_lines_printed_by_the_trusted_train_util_are_not_the_students(tmp_path):
    trusted = "Test Loss=0.0454, Test accuracy=0.9900\n"
    run, cell = _run_with(tmp_path, trusted + "Nbits = 4\n" + trusted + "my accuracy: 0.42\n",
                          [{"ev": "trusted_print", "cell": 3, "text": trusted},
                           {"ev": "trusted_print", "cell": 3, "text": trusted}])
    assert run.student_lines(cell) == ["Nbits = 4", "my accuracy: 0.42"]


def test_a_printed_accuracy_no_evaluation_produced_is_flagged(tmp_path):
    run, _ = _run_with(tmp_path, "Test Loss=0.0454, Test accuracy=0.9900\nfinal accuracy: 0.9123\n",
                       [{"ev": "trusted_print", "cell": 3,
                         "text": "Test Loss=0.0454, Test accuracy=0.9900\n"},
                        {"ev": "test", "cell": 3, "accuracy": 0.99}])
    lies = checks._false_accuracy_claims(run, {3})
    assert len(lies) == 1 and "0.9123" in lies[0] and "hw4.ipynb cell 5" in lies[0]
    honest, _ = _run_with(tmp_path, "final accuracy: 0.99\n", [{"ev": "test", "cell": 3, "accuracy": 0.99}])
    assert checks._false_accuracy_claims(honest, {3}) == []


# ----------------------------------------------------------------------------- Lab 1 figures


def _weights_axes(traj: np.ndarray) -> dict:
    return {"yscale": "linear", "lines": [{"y": traj[:, j].tolist()} for j in range(traj.shape[1])]}


def _plot_run_figure(traj: np.ndarray, loss: np.ndarray) -> dict:
    """What the harness records for the template's plot_run: log10 loss left, weights right."""
    return {"ev": "figure", "axes": [
        {"yscale": "linear", "lines": [{"y": np.log10(np.maximum(loss, 1e-16)).tolist()}]},
        _weights_axes(traj),
    ]}


def _gd(steps: int = 200) -> np.ndarray:
    import reference.lab1 as ref

    return ref.trajectory("gd")[: steps + 1]


def test_lab1_figure_matcher_accepts_the_plot_of_the_run():
    X, y = np.array(CFG.lab1.X), np.array(CFG.lab1.y)
    traj = _gd()
    loss = np.sum((traj @ X.T - y) ** 2, axis=1)
    call = {"trajectory": traj.tolist()}
    assert checks._figure_shows([_plot_run_figure(traj, loss)], call, X, y)
    # the loss logged after each update (one shorter), on a log-scaled axis, without log()
    after = {"ev": "figure",
             "axes": [{"yscale": "log", "lines": [{"y": loss[1:].tolist()}]}, _weights_axes(traj)]}
    assert checks._figure_shows([after], call, X, y)


def test_lab1_figure_matcher_rejects_other_runs_and_a_linear_loss():
    X, y = np.array(CFG.lab1.X), np.array(CFG.lab1.y)
    traj = _gd()
    loss = np.sum((traj @ X.T - y) ** 2, axis=1)
    other = traj * 1.01  # a figure of some other run
    assert not checks._figure_shows([_plot_run_figure(other, loss)], {"trajectory": traj.tolist()}, X, y)
    linear = {"ev": "figure",
              "axes": [{"yscale": "linear", "lines": [{"y": loss.tolist()}]}, _weights_axes(traj)]}
    assert not checks._figure_shows([linear], {"trajectory": traj.tolist()}, X, y)


def test_lab1_loss_curve_may_follow_the_students_own_loss():
    """A student whose loss differs from the reference's (lab1.a, graded there) still gets the
    figure check when the plot shows their own loss along the run."""
    X, y = np.array(CFG.lab1.X), np.array(CFG.lab1.y)
    traj = _gd()
    mean_loss = np.mean((traj @ X.T - y) ** 2, axis=1)
    call = {"trajectory": traj.tolist(), "student_loss": mean_loss.tolist()}
    assert checks._figure_shows([_plot_run_figure(traj, mean_loss)], call, X, y)
    assert not checks._figure_shows([_plot_run_figure(traj, mean_loss)], {"trajectory": traj.tolist()}, X, y)


# ----------------------------------------------------------------------------- harvest


def _run_folder(tmp_path: Path) -> Path:
    base = tmp_path / "run" / "hw4"
    (base / "work" / "figures").mkdir(parents=True)
    (base / "meta" / "masks").mkdir(parents=True)
    (base / "meta" / "run.json").write_text(json.dumps({"status": "finished", "cells": []}))
    return base


def test_harvest_never_follows_a_link_the_sandbox_planted(tmp_path):
    secret = tmp_path / "grader-secret.txt"
    secret.write_text("the reference solution")
    base = _run_folder(tmp_path)
    os.symlink(secret, base / "work" / "net_after_finetune.pt")
    os.symlink(secret, base / "meta" / "events.jsonl")
    os.symlink(tmp_path, base / "work" / "figures" / "escape.png")
    dest = tmp_path / "harvest"
    _harvest_one(base, dest, CFG)
    assert not (dest / "files" / "net_after_finetune.pt").exists()
    assert not (dest / "events.jsonl").exists()
    assert json.loads((dest / "figures.json").read_text()) == []
    assert any("not a regular file" in s for s in json.loads((dest / "skipped.json").read_text()))


def test_harvest_skips_fifos_and_oversized_files_without_hanging(tmp_path):
    base = _run_folder(tmp_path)
    os.mkfifo(base / "work" / "net_after_iterative_prune.pt")  # opening it for reading would block
    with open(base / "work" / "net_after_finetune.pt", "wb") as f:
        f.truncate((64 << 20) + 1)
    (base / "meta" / "masks" / "mask-1.pt").write_bytes(b"x")
    dest = tmp_path / "harvest"
    _harvest_one(base, dest, CFG)
    assert not (dest / "files" / "net_after_iterative_prune.pt").exists()
    assert not (dest / "files" / "net_after_finetune.pt").exists()
    assert (dest / "masks" / "mask-1.pt").read_bytes() == b"x"


def test_harvest_replaced_meta_folder_link_is_not_followed(tmp_path):
    base = _run_folder(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "run.json").write_text('{"status": "finished"}')
    shutil.rmtree(base / "meta")
    os.symlink(elsewhere, base / "meta")
    dest = tmp_path / "harvest"
    _harvest_one(base, dest, CFG)
    assert not (dest / "run.json").exists()


# ----------------------------------------------------------------------------- selection and cache


def test_selection_finds_the_2023_layout_and_the_template(repo_root, template_sample, tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    shutil.copyfile(template_sample / "hw4.ipynb", sub / "HW4_Lab2_and_3.ipynb")
    shutil.copyfile(template_sample / "lab1.ipynb", sub / "lab1_jsmith.ipynb")
    assert select_notebooks(discover(sub)) == {"hw4": "HW4_Lab2_and_3.ipynb", "lab1": "lab1_jsmith.ipynb"}
    assert select_notebooks(discover(template_sample)) == {"hw4": "hw4.ipynb", "lab1": "lab1.ipynb"}


def test_cache_key_follows_the_submissions_content(correct_sample, submission_copy):
    options = RunOptions(cache_dir=None)
    sub = submission_copy(correct_sample)
    selected = select_notebooks(discover(sub))
    key = cache_key(sub, selected, CFG, options)
    (sub / "figures").mkdir(exist_ok=True)
    (sub / "figures" / "old.png").write_bytes(b"png")  # outputs the run recreates do not count
    assert cache_key(sub, selected, CFG, options) == key
    with open(sub / "FP_layers.py", "a") as f:
        f.write("\n# changed\n")
    assert cache_key(sub, selected, CFG, options) != key
    assert cache_key(correct_sample, selected, CFG, RunOptions(cache_dir=None, fast_train_size=64)) != \
        cache_key(correct_sample, selected, CFG, options)


# ----------------------------------------------------------------------------- a small sandboxed run

PROBE_CELLS = [
    # 1: fast mode's environment, as the student's code sees it
    "import os, random, numpy as np, torch, torchvision, torch.utils.data as tud\n"
    "ds = torchvision.datasets.CIFAR10(root='./data', train=True, download=True)\n"
    "loader = tud.DataLoader(ds, batch_size=4, num_workers=4, persistent_workers=True)\n"
    "print('ENV', len(ds), loader.num_workers, torch.cuda.is_available(), float(torch.rand(1)))",
    # 2: a GPU notebook's calls run on the CPU
    "t = torch.ones(2).cuda()\nm = torch.nn.Linear(2, 2).cuda().to('cuda')\nz = torch.zeros(2, device='cuda')\n"
    "print('CUDA', t.device, next(m.parameters()).device, z.device)",
    # 3: an error does not stop the run
    "undefined_name",
    # 4: a cell past its time limit is interrupted; the next cell still runs
    "import time\ntime.sleep(60)",
    # 5: unbounded output is capped
    "for i in range(200000):\n    print('x' * 50)",
    # 6: still alive, and the same seed as cell 1 would give in a fresh run
    "print('ALIVE', float(torch.rand(1)))",
    # 7: a planted link to a grader file is never read back
    "os.symlink('/etc/passwd', 'net_after_finetune.pt')",
    # 8: the reference solution is out of reach
    "try:\n    open(__REFERENCE_PATH__).read()\n    print('REFERENCE READ')\nexcept OSError as exc:\n"
    "    print('REFERENCE HIDDEN', type(exc).__name__)",
    # 9: the Lab 1 notebook ran first in its own kernel, which is gone by now
    "kernels = [p for p in os.listdir('/proc') if p.isdigit() and os.path.exists(f'/proc/{p}/cmdline')\n"
    "           and b'ipykernel' in open(f'/proc/{p}/cmdline', 'rb').read()\n"
    "           and os.stat(f'/proc/{p}').st_uid == os.getuid()]\n"
    "print('KERNELS', len(kernels))",
    # 10: written for Colab: drive mounted, models under /content/drive, a figure into a new folder
    "from google.colab import drive\ndrive.mount('/content/drive')\n"
    "state = torch.load('/content/drive/My Drive/DLHW4/pretrained_model.pt')\n"
    "torch.save(state, '/content/drive/My Drive/DLHW4/net_after_iterative_prune.pt')\n"
    "os.chdir('/content/drive/My Drive/DLHW4')\n"
    "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.savefig('Figures/lab3b.pdf')\n"
    "print('COLAB', len(state), os.path.isfile('Figures/lab3b.pdf'), os.path.isfile('net_after_iterative_prune.pt'))",
    # 11: a training epoch on the fixture is capped, whatever batch size the notebook asks for
    "import torchvision.transforms as T\n"
    "ds = torchvision.datasets.CIFAR10(root='./data', train=True, download=True, transform=T.ToTensor())\n"
    "tl = torch.utils.data.DataLoader(ds, batch_size=256, shuffle=True, num_workers=16)\n"
    "sizes = [len(y) for _, y in tl]\n"
    "vs = torchvision.datasets.CIFAR10(root='./data', train=False, download=True, transform=T.ToTensor())\n"
    "vl = torch.utils.data.DataLoader(vs, batch_size=100, shuffle=False, num_workers=2)\n"
    "print('CAP', len(tl), sizes, len(vl), sum(len(y) for _, y in vl))",
]
REFERENCE = Path(__file__).resolve().parents[2] / "reference" / "lab2.py"


@pytest.fixture(scope="module")
def probe_session(tmp_path_factory, repo_root):
    sub = tmp_path_factory.mktemp("probe") / "student"
    sub.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src.replace("__REFERENCE_PATH__", repr(str(REFERENCE))))
                for src in PROBE_CELLS]
    # a Lab 2 function so the notebook is selected as the Lab 2/3 notebook
    nb.cells.insert(0, nbformat.v4.new_code_cell("def prune_by_percentage(layer, q=70.0):\n    pass"))
    nbformat.write(nb, sub / "hw4.ipynb")
    lab1 = nbformat.v4.new_notebook()
    lab1.cells = [nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(lab1, sub / "lab1.ipynb")
    options = RunOptions(cache_dir=str(tmp_path_factory.mktemp("probe-cache")), cell_timeout=8, budget=120)
    return run_notebooks(sub, CFG, options)


def _cell_out(session, n: int) -> CellRecord:
    return session.hw4.cells[n]  # cell 0 is the inserted definition


def test_fast_mode_gives_the_fixture_no_loader_workers_and_no_gpu(probe_session):
    line = next(x for x in _cell_out(probe_session, 1).stdout.splitlines() if x.startswith("ENV"))
    _, size, workers, cuda, _ = line.split()
    assert int(size) == CFG.data.fast_train_size
    assert (workers, cuda) == ("0", "False")


def test_cuda_calls_run_on_the_cpu_and_are_noted(probe_session):
    cell = _cell_out(probe_session, 2)
    assert cell.status == "ok", cell.error
    assert "CUDA cpu cpu cpu" in cell.stdout
    gpu = [n for n in probe_session.notes if "GPU" in n]
    assert len(gpu) == 1, gpu  # one note, not one per cell and call
    assert '(.cuda(), .to("cuda"), device="cuda") in cell 3;' in gpu[0], gpu[0]


def test_a_colab_notebook_runs_here_and_what_was_mapped_is_a_note(probe_session):
    """Issue 11: drive.mount, /content/drive paths, %cd and a figure saved into a folder that was
    not handed in all work; the checkpoint lands where the grader collects it; one note says so."""
    cell = _cell_out(probe_session, 10)
    assert cell.status == "ok", cell.error
    line = next(x for x in cell.stdout.splitlines() if x.startswith("COLAB"))
    assert line.split()[2:] == ["True", "True"], line
    state, problem = probe_session.hw4.checkpoint("net_after_iterative_prune.pt")
    assert state is not None, problem
    (note,) = [n for n in probe_session.notes if "written for another machine" in n]
    for part in ("skipped the Google Drive mount", "'/content/drive/My Drive/DLHW4/pretrained_model.pt'",
                 "wrote '/content/drive/My Drive/DLHW4/net_after_iterative_prune.pt'",
                 "created the folder(s) 'Figures'", "not a deduction"):
        assert part in note, note


def test_training_epochs_are_capped_in_fast_mode_and_the_feedback_says_so(probe_session):
    """Issue 13: a course notebook's 20-epoch loops must grade in minutes: a training loader on the
    fixture yields at most fast_batches_per_epoch batches of fast_batch_size; the test loader all of
    the fast_test_size subset of the test split (every epoch evaluates on all of it)."""
    line = next(x for x in _cell_out(probe_session, 11).stdout.splitlines() if x.startswith("CAP"))
    batches, size = CFG.data.fast_batches_per_epoch, CFG.data.fast_batch_size
    test = CFG.data.fast_test_size
    assert 0 < test < 500
    assert line == f"CAP {batches} {[size] * batches} {-(-test // 100)} {test}", line
    assert any(f"at most {batches} batch(es) of at most {size} images" in n and f"evaluates on {test} of its test"
               in n for n in probe_session.notes), \
        probe_session.notes


def test_an_error_or_a_timeout_in_one_cell_does_not_stop_the_run(probe_session):
    err, slow, alive = _cell_out(probe_session, 3), _cell_out(probe_session, 4), _cell_out(probe_session, 6)
    assert err.status == "error" and err.error.ename == "NameError"
    assert slow.status == "timeout" and "did not finish within 8 s" in slow.error.describe()
    assert slow.seconds < 30
    assert alive.status == "ok" and "ALIVE" in alive.stdout


def test_seeds_are_set_per_cell(probe_session):
    """Each cell starts from seed + its ordinal: the same cell gives the same numbers."""
    import torch

    env_line = next(x for x in _cell_out(probe_session, 1).stdout.splitlines() if x.startswith("ENV"))
    seeded = torch.Generator().manual_seed(0 + _cell_out(probe_session, 1).ordinal)
    assert float(env_line.split()[-1]) == pytest.approx(float(torch.rand(1, generator=seeded)))


def test_output_is_capped(probe_session):
    cell = _cell_out(probe_session, 5)
    assert len(cell.stdout) < 300_000
    assert "further output of this cell was dropped" in cell.text


def test_the_notebook_cannot_read_the_reference_solution(probe_session):
    assert REFERENCE.is_file()
    assert "REFERENCE HIDDEN" in _cell_out(probe_session, 8).stdout, _cell_out(probe_session, 8).stdout


def test_each_notebook_gets_a_kernel_that_is_shut_down_after_it(probe_session):
    """Lab 1 runs first; its kernel must not linger (and hold memory) while Lab 2/3 runs."""
    assert probe_session.lab1.status == "finished"
    assert "KERNELS 1" in _cell_out(probe_session, 9).stdout, _cell_out(probe_session, 9).stdout


def test_a_planted_link_is_not_harvested(probe_session):
    state, problem = probe_session.hw4.checkpoint("net_after_finetune.pt")
    assert state is None and problem == "was not written"


# ----------------------------------------------------------------------------- bugs found on the way


def test_harvest_keeps_the_first_masks_in_numeric_order(tmp_path):
    """mask-10 sorts before mask-2 as text; the checks need the earliest patterns."""
    base = _run_folder(tmp_path)
    for n in range(1, 71):
        (base / "meta" / "masks" / f"mask-{n}.pt").write_bytes(b"m")
    dest = tmp_path / "harvest"
    _harvest_one(base, dest, CFG)
    kept = sorted(int(p.stem.split("-")[1]) for p in (dest / "masks").iterdir())
    assert kept == list(range(1, 65))


def test_an_event_may_carry_a_field_named_kind(tmp_path, monkeypatch):
    """torch.save's event has a "kind" field; emit() once took its event name as `kind`."""
    from grader.notebooks import harness

    monkeypatch.setattr(harness, "_S", harness._State({"events": str(tmp_path / "events.jsonl")}))
    harness.emit("save", file="net.pt", kind="state_dict", fingerprint=None)
    harness._S.log.close()
    (event,) = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert (event["ev"], event["kind"], event["file"]) == ("save", "state_dict", "net.pt")


def test_store_outputs_copies_outputs_and_keeps_sources(tmp_path):
    """The solution sample gets a run's outputs; its sources (what assign --check compares) stay."""
    from grader.notebooks.execute import store_outputs
    from grader.notebooks.session import NotebookSession

    root = tmp_path / "sub"
    root.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# title"), nbformat.v4.new_code_cell("print(1)")]
    nbformat.write(nb, root / "hw4.ipynb")
    ran = nbformat.from_dict(json.loads(json.dumps(nb)))
    figure = {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure size 640x480>"}
    ran.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n"),
                            nbformat.v4.new_output("display_data", data=figure)]
    ran.cells[1].execution_count = 1
    folder = tmp_path / "harvest" / "hw4"
    folder.mkdir(parents=True)
    nbformat.write(ran, folder / "executed.ipynb")
    run = NotebookRun("hw4", "hw4.ipynb", folder, status="finished")
    run.cells = [CellRecord(1, "print(1)", "code", status="ok")]
    session = NotebookSession(CFG, RunOptions(cache_dir=None), tmp_path / "harvest", root,
                              {"hw4": "hw4.ipynb"}, {}, runs={"hw4": run})
    assert store_outputs(session) == [root / "hw4.ipynb"]
    stored = json.loads((root / "hw4.ipynb").read_text())
    handed_in = json.loads(nbformat.writes(nb))["cells"]
    assert [c["source"] for c in stored["cells"]] == [c["source"] for c in handed_in]
    assert "".join(stored["cells"][1]["outputs"][0]["text"]) == "1\n"
    # figures keep their text form only: every sample in the repository copies these outputs
    figure = stored["cells"][1]["outputs"][1]["data"]
    assert list(figure) == ["text/plain"] and "".join(figure["text/plain"]) == "<Figure size 640x480>"
    assert stored["cells"][1]["execution_count"] == 1
    run.status = "kernel died"  # a run that did not finish cleanly is never stored
    with pytest.raises(RuntimeError, match="not storing"):
        store_outputs(session)


def test_full_scale_needs_both_the_data_and_the_checkpoint(tmp_path, correct_sample):
    from grader.errors import GraderError
    from grader.notebooks.run import _cifar_root

    with pytest.raises(GraderError, match="both"):
        run_notebooks(correct_sample, CFG, RunOptions(cache_dir=None, data_root=str(tmp_path)))
    (tmp_path / "cifar-10-batches-py").mkdir()
    # --hw4-data-root may name the folder that holds cifar-10-batches-py, or that folder itself
    assert _cifar_root(str(tmp_path)) == str(tmp_path)
    assert _cifar_root(str(tmp_path / "cifar-10-batches-py")) == str(tmp_path)
    with pytest.raises(GraderError, match="no cifar-10-batches-py"):
        _cifar_root(str(tmp_path / "elsewhere"))


def test_the_same_submission_is_taken_from_the_cache(probe_session, monkeypatch):
    """A second grading of an unchanged submission reuses the harvested run (no sandbox)."""
    from grader.notebooks import run as run_module

    def no_run(*args, **kwargs):
        raise AssertionError("the notebooks ran again although the cache holds this run")

    monkeypatch.setattr(run_module, "_run_and_harvest", no_run)
    again = run_notebooks(probe_session.root, CFG, probe_session.options)
    assert again.folder == probe_session.folder
    assert [c.status for c in again.hw4.cells] == [c.status for c in probe_session.hw4.cells]


def test_the_command_line_module_does_not_shadow_the_runner():
    """`grader.notebooks.execute` (the CLI module) once replaced the package's `execute` function
    as soon as it was imported, and every later run failed with "'module' is not callable"."""
    import grader.notebooks
    import grader.notebooks.execute

    assert callable(grader.notebooks.run_notebooks)
    assert callable(grader.notebooks.execute_notebooks)


def test_a_notebook_that_floods_its_folder_is_stopped(tmp_path, monkeypatch):
    """The run folder is the host's: a notebook writing without end is stopped by the watchdog,
    and the stop reaches the student as a note."""
    from grader.notebooks import run as run_module

    monkeypatch.setattr(run_module, "MAX_RUN_FILES", 300)
    sub = tmp_path / "student"
    sub.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("def prune_by_percentage(layer, q=70.0):\n    pass"),
                nbformat.v4.new_code_cell("import os, time\nfor i in range(100000):\n"
                                          "    open(f'junk-{i}', 'w').close()\n    time.sleep(0.001)")]
    nbformat.write(nb, sub / "hw4.ipynb")
    session = run_notebooks(sub, CFG, RunOptions(cache_dir=None, cell_timeout=120, budget=120))
    try:
        assert "wrote more than" in (session.info.get("stop") or "")
        assert any("wrote more than" in n for n in session.notes), session.notes
        stopped = session.hw4.cells[1]
        assert stopped.status == "stopped" and "wrote more than" in stopped.error.describe()
    finally:
        shutil.rmtree(session.folder, ignore_errors=True)


def test_lab3c_evaluations_before_finetuning_do_not_count_for_lab3b(tmp_path):
    """Lab 3 (c) evaluates the pretrained model at 4/3/2 bits before finetuning; a notebook whose
    Lab 3 (b) sweep failed must not get those as its sweep (found by nb_error_in_one_cell)."""
    from grader.notebooks.session import NotebookSession

    run = NotebookRun("hw4", "hw4.ipynb", tmp_path, status="finished")
    sweep = CellRecord(21, "for Nbits in [6, 5, 4, 3, 2]: ...", "code", status="error", ordinal=12)
    finetuning = CellRecord(23, "for Nbits in [4, 3, 2]: finetune(net)", "code", status="ok", ordinal=13)
    run.cells = [sweep, finetuning]
    run.events = [{"ev": "installed", "cell": 0},
                  {"ev": "finetune_start", "cell": 13, "nbits": 4, "fingerprint": "pre"},
                  *[{"ev": "test", "cell": 13, "nbits": b, "symmetric": False, "fingerprint": "pre",
                     "accuracy": 0.9} for b in (4, 3, 2)]]
    session = NotebookSession(CFG, RunOptions(cache_dir=None), tmp_path, tmp_path, {"hw4": "hw4.ipynb"},
                              {}, runs={"hw4": run})
    session.__dict__["pretrained"] = {}
    session.__dict__["pretrained_fingerprint"] = "pre"
    outcome = checks.bit_width_evaluations(session, "lab3.b")
    assert outcome.fraction == 0.0
    assert checks.printed_accuracies(session, "lab3.b").fraction == 0.0


INLINE_STE_CELLS = [
    "def prune_by_percentage(layer, q=70.0):\n    pass",
    # Lab 2: full-precision training before the notebook defines STE (no FP_layers.py handed in)
    "import torch\nfrom resnet20 import ResNetCIFAR\nnet = ResNetCIFAR(num_layers=20)\n"
    "net(torch.randn(2, 3, 32, 32)).sum().backward()\nprint('FLOAT OK')",
    # Lab 3: the notebook's own STE, used by the given FP layers from then on
    "class STE(torch.autograd.Function):\n    @staticmethod\n    def forward(ctx, w, bit, symmetric=False):\n"
    "        print('INLINE STE', bit)\n        return w\n    @staticmethod\n    def backward(ctx, g):\n"
    "        return g, None, None",
    "ResNetCIFAR(num_layers=20, Nbits=2)(torch.randn(1, 3, 32, 32))",
]


def test_an_inline_ste_may_come_after_the_float_training(tmp_path):
    """The 2023 layout has no FP_layers.py and defines STE in its Lab 3 part: the Lab 2 training
    before it must still run (the given wrappers' stand-in STE passes full precision through)."""
    sub = tmp_path / "student"
    sub.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in INLINE_STE_CELLS]
    nbformat.write(nb, sub / "HW4_Lab2_and_3.ipynb")
    session = run_notebooks(sub, CFG, RunOptions(cache_dir=None, cell_timeout=60, budget=120))
    try:
        cells = session.hw4.cells
        failures = [session.hw4.describe_failure(c) for c in session.hw4.failed_cells()]
        assert [c.status for c in cells] == ["ok"] * 4, failures
        assert "FLOAT OK" in cells[1].stdout
        assert "INLINE STE 2" in cells[3].stdout
    finally:
        shutil.rmtree(session.folder, ignore_errors=True)


def test_the_failing_line_is_found_in_a_long_traceback(tmp_path):
    """A deep traceback (through torch) was cut to its tail before the cell's own frame was read,
    and feedback lost the line number."""
    nb = nbformat.v4.new_notebook()
    frames = ["Cell In[12], line 4\n      3 net = ResNetCIFAR(Nbits=4)\n----> 4 test(net)\n"]
    frames += [f"File /lib/torch/module.py:{n}, in _call_impl\n" + "x" * 200 for n in range(40)]
    nb.cells = [nbformat.v4.new_code_cell("...", outputs=[nbformat.v4.new_output(
        "error", ename="NotImplementedError", evalue="STE.forward: your code here", traceback=frames)])]
    nbformat.write(nb, tmp_path / "executed.ipynb")
    (tmp_path / "run.json").write_text(json.dumps({"status": "finished", "cells": [
        {"index": 0, "status": "error", "ordinal": 1}]}))
    run = NotebookRun.load("hw4", "hw4.ipynb", tmp_path)
    assert run.cells[0].error.line == 4
    assert run.describe_failure(run.cells[0]).endswith("your code here (line 4)")


# ----------------------------------------------------------------------------- checks follow the course's cells


class _Session:
    """What the checks read of a NotebookSession: a run with made-up events, the real data."""

    def __init__(self, run: NotebookRun):
        from grader.notebooks.evidence import load_state_dict
        from grader.notebooks.session import TrustedEvaluator

        self.cfg, self.hw4, self.notes = CFG, run, []
        self.pretrained = load_state_dict(CFG.data.checkpoint)[0]
        self.pretrained_fingerprint = harness.fingerprint(self.pretrained)
        self.evaluator = TrustedEvaluator(CFG)

    def check_harness(self, run):
        pass

    def note(self, text):
        self.notes.append(text)


def _course_global_loop(step: float) -> list[dict]:
    """The events of the course's global cell: prune before epochs 0-9 with q=(epoch+1)*step,
    prune=False until epoch 8, then the mask fixed, the best of epochs >= 10 saved."""
    events = []
    for epoch in range(20):
        if epoch < 10:
            events.append({"ev": "global_prune", "cell": 17, "q": (epoch + 1) * step})
        events.append({"ev": "finetune_after_prune", "cell": 17, "prune": epoch >= 9})
    events.append({"ev": "save", "cell": 17, "file": "net_after_global_iterative_prune.pt"})
    return events


@pytest.mark.parametrize("step", [7.0, 8.0])
def test_the_global_loop_may_keep_the_courses_given_line(tmp_path, step):
    """2023F's given global cell says q=(epoch+1)*8 in a 70 % term: it is graded at 80 % there."""
    run = NotebookRun("hw4", "hw4.ipynb", tmp_path, status="finished", events=_course_global_loop(step))
    assert checks.schedule(_Session(run), "lab2.e").fraction == 1.0
    wrong = NotebookRun("hw4", "hw4.ipynb", tmp_path, status="finished", events=_course_global_loop(6.0))
    assert checks.schedule(_Session(wrong), "lab2.e").fraction < 1.0


def test_lab3d_may_quantize_the_global_iterative_checkpoint(tmp_path):
    """The course's Lab 3 (d) cell quantizes net_after_global_iterative_prune.pt (and finetunes it
    in the same cell): that is the pruned model of (d) as much as net_after_finetune.pt is."""
    import torch

    import reference.lab2 as ref
    from reference.resnet20 import ResNetCIFAR

    net = ResNetCIFAR(num_layers=20)
    net.load_state_dict(torch.load(CFG.data.checkpoint, weights_only=True))
    ref.global_prune_by_percentage(net, q=70.0)
    (tmp_path / "files").mkdir()
    torch.save(net.state_dict(), tmp_path / "files" / "net_after_global_iterative_prune.pt")
    fp = harness.fingerprint(net.state_dict())
    events = [{"ev": "test", "cell": 23, "fingerprint": fp, "nbits": b, "symmetric": False, "accuracy": None}
              for b in CFG.lab3.pruned_bits]
    events += [{"ev": "finetune_start", "cell": 23, "nbits": 2, "fingerprint": fp}]
    run = NotebookRun("hw4", "hw4.ipynb", tmp_path, status="finished", events=events)
    outcome = checks.bit_width_evaluations(_Session(run), "lab3.d")
    assert outcome.fraction == 1.0, outcome.problems


def test_lab3c_accepts_the_courses_lab3d_finetune_overwriting_the_checkpoint(tmp_path):
    """The course's Lab 3 (d) cell finetunes the pruned model after (c): quantized_net_after_finetune.pt
    on disk is then (d)'s model, the last one saved, not a stale file."""
    import torch

    session = _Session(NotebookRun("hw4", "hw4.ipynb", tmp_path, status="finished"))
    pre = session.pretrained_fingerprint
    events = []
    for b in CFG.lab3.finetune_bits:
        events += [{"ev": "finetune_start", "cell": 22, "nbits": b, "symmetric": False, "fingerprint": pre},
                   {"ev": "save", "cell": 22, "file": CFG.lab3.checkpoint, "fingerprint": f"c{b}"},
                   {"ev": "finetune_end", "cell": 22, "nbits": b, "best": 0.9},
                   {"ev": "test", "cell": 22, "fingerprint": f"c{b}", "nbits": b, "accuracy": 0.9}]
    (tmp_path / "files").mkdir()
    torch.save(session.pretrained, tmp_path / "files" / CFG.lab3.checkpoint)  # what (d) saved last
    events += [{"ev": "finetune_start", "cell": 25, "nbits": 2, "symmetric": False, "fingerprint": "pruned"},
               {"ev": "save", "cell": 25, "file": CFG.lab3.checkpoint, "fingerprint": pre},
               {"ev": "finetune_end", "cell": 25, "nbits": 2, "best": 0.8}]
    session.hw4.events = events
    outcome = checks.lab3c_evaluated(session)
    assert outcome.fraction == 1.0, outcome.problems
