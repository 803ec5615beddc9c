"""Faults a user meets at the command line, each reproduced for real.

Damaged checkpoints (bytes overwritten, a file truncated, a bit flipped that orbax itself
reads back without complaint), a full disk (a small tmpfs), a read-only checkpoint
directory, bad options, and parameters of another cell. The training runs are the small
mnist_rows runs of `mnist_runs` (46 steps, checkpoints kept at 30, 40 and 46); issue 24's
faults (two runs on one workdir, signals, ...) are in test_reliability.py.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from mnist_runs import ROOT, SMALL, errors, final_state, like_state, mount_tmpfs, records, run, steps

import seqnets as sn
from experiments import classification, cli, mnist_rows
from seqnets.training import Checkpointer, create_train_state
from seqnets.training.checkpoint import MANIFEST_FILE, CheckpointError, _to_saveable


def overwrite_sharding(step_dir: Path) -> Path:
    path = step_dir / "default" / "_sharding"
    data = bytearray(path.read_bytes())
    data[:16] = b"\xff" * 16
    path.write_bytes(bytes(data))
    return path


def truncate_data_file(step_dir: Path) -> Path:
    path = sorted((step_dir / "default" / "d").iterdir())[0]
    with path.open("r+b") as f:
        f.truncate(100)
    return path


def flip_bit_in_largest_array_file(step_dir: Path) -> Path:
    path = max((step_dir / "default" / "ocdbt.process_0" / "d").iterdir(),
               key=lambda p: p.stat().st_size)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return path


# The flipped bit and the overwritten sharding file run with -m slow; the truncated data file
# runs by default.
@pytest.mark.parametrize("damage", [pytest.param(overwrite_sharding, marks=pytest.mark.slow),
                                    truncate_data_file,
                                    pytest.param(flip_bit_in_largest_array_file,
                                                 marks=pytest.mark.slow)])
def test_resume_falls_back_from_a_damaged_newest_checkpoint(tmp_path, straight, damage):
    """The issue's reproductions: --resume restores step 40, moves 46 aside, and ends with
    the parameters of the uninterrupted run (which equal step 40 restored and continued)."""
    straight_dir, expected = straight
    workdir = tmp_path / "run"
    shutil.copytree(straight_dir, workdir)
    damaged = damage(workdir / "checkpoints" / "46")
    damaged_bytes = damaged.read_bytes()
    records_before = records(workdir)

    proc = run(*SMALL, "--workdir", str(workdir), "--resume")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "resumed from step 40" in proc.stdout
    report = "\n".join(errors(proc))
    assert "step 46" in report and str(damaged) in report, report
    assert "Traceback" not in proc.stderr and "Event loop is closed" not in proc.stderr
    # Moved aside, never deleted: the damaged file is still there, byte for byte.
    (aside,) = (workdir / "checkpoints.corrupt").iterdir()
    assert aside.name.startswith("46-")
    assert (aside / damaged.relative_to(workdir / "checkpoints" / "46")).read_bytes() == damaged_bytes
    assert steps(workdir) == [30, 40, 46]
    got = final_state(workdir)
    assert int(got.step) == 46
    chex.assert_trees_all_equal(got.params, expected.params)
    chex.assert_trees_all_equal(got.opt_state, expected.opt_state)
    # Epoch 2 is redone from step 40, its running sums restored from the checkpoint: the
    # record equals the uninterrupted run's, train loss included.
    assert records(workdir) == records_before
    results = json.loads((workdir / "results.json").read_text())
    assert results["test_accuracy"] == records_before[-1]["test_accuracy"]


def test_array_checksums_catch_a_flipped_bit_orbax_reads_back(tmp_path, straight):
    """Without the file manifest, orbax restores the flipped bit silently; the Checkpointer
    refuses a step whose manifest (its files' checksums) is missing, and falls back."""
    workdir = tmp_path / "run"
    shutil.copytree(straight[0], workdir)
    step_dir = workdir / "checkpoints" / "46"
    (step_dir / MANIFEST_FILE).unlink()
    flip_bit_in_largest_array_file(step_dir)
    like = _to_saveable(classification.saved_tree(like_state()))
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), like)
    manager = ocp.CheckpointManager(workdir / "checkpoints")
    manager.restore(46, args=ocp.args.StandardRestore(abstract))  # orbax: no complaint
    manager.close()

    ckpt = Checkpointer(workdir / "checkpoints", save_every=1)
    with pytest.raises(CheckpointError, match=r"step 46 fails verification .*checksum"):
        ckpt.restore(classification.saved_tree(like_state()), step=46)
    state = ckpt.restore(classification.saved_tree(like_state()))["state"]  # falls back
    ckpt.close()
    assert int(state.step) == 40
    assert [p.name.split("-")[0] for p in (workdir / "checkpoints.corrupt").iterdir()] == ["46"]


def test_a_kill_before_the_first_manifest_does_not_lose_the_run(tmp_path, caplog):
    """A kill between orbax's commit and the manifest of the only checkpoint (seen once in
    test_killed_run_resumes_to_the_same_parameters): the step is restored, with a warning
    that its bytes could not be checked, rather than refused as damaged."""
    params = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}
    ckpt = Checkpointer(tmp_path / "checkpoints", save_every=1)
    ckpt.save(params, step=5)
    ckpt.close()
    (tmp_path / "checkpoints" / "5" / MANIFEST_FILE).unlink()
    ckpt = Checkpointer(tmp_path / "checkpoints", save_every=1)
    with caplog.at_level("WARNING", logger="seqnets.training.checkpoint"):
        restored = ckpt.restore(jax.tree.map(jnp.zeros_like, params))
    ckpt.close()
    chex.assert_trees_all_equal(restored, params)
    assert "has no manifest" in caplog.text and "could not be checked" in caplog.text
    assert not (tmp_path / "checkpoints.corrupt").exists()


def test_no_intact_checkpoint_exits_nonzero_and_never_starts_afresh(tmp_path, straight):
    workdir = tmp_path / "run"
    shutil.copytree(straight[0], workdir)
    for step in (30, 40, 46):
        truncate_data_file(workdir / "checkpoints" / str(step))
    metrics_before = (workdir / "metrics.jsonl").read_text()

    proc = run(*SMALL, "--workdir", str(workdir), "--resume")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert errors(proc)[-1].startswith("error: no intact checkpoint in ")
    assert "Traceback" not in proc.stderr and "epoch" not in proc.stdout
    assert steps(workdir) == []
    assert sorted(p.name.split("-")[0] for p in (workdir / "checkpoints.corrupt").iterdir()) == \
        ["30", "40", "46"]
    assert (workdir / "metrics.jsonl").read_text() == metrics_before
    # A second --resume finds only what was moved aside, and still refuses.
    again = run(*SMALL, "--workdir", str(workdir), "--resume")
    assert again.returncode == 1 and "moved to" in errors(again)[-1]
    assert (workdir / "metrics.jsonl").read_text() == metrics_before


@pytest.mark.slow  # 44 s; the full disk runs by default in test_first_write_on_a_full_disk and
# test_reliability's full disk after the last checkpoint
def test_full_disk_gives_one_message_and_resume_continues(tmp_path, straight, mounts):
    """A 3,500 KB tmpfs holds three of these ~1 MB checkpoints (10, 20, 30); writing
    step 40 next to them fails. After the space is freed, --resume continues from 30."""
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "size=3500k")
    mounts.append(disk)
    workdir = disk / "run"
    proc = run(*SMALL, "--workdir", str(workdir))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert errors(proc) == [
        f"error: could not write the checkpoint of step 40 to {workdir}/checkpoints/40: No space "
        "left on device. The earlier checkpoints (steps 10, 20, 30) are intact; free space or "
        "fix the permissions, then resume."
    ]
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["10", "20", "30"]
    assert [json.loads(x)["step"] for x in (workdir / "metrics.jsonl").read_text().splitlines()] \
        == [23]

    subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
    proc = run(*SMALL, "--workdir", str(workdir), "--resume")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "resumed from step 30" in proc.stdout
    chex.assert_trees_all_equal(final_state(workdir).params, straight[1].params)


def test_first_write_on_a_full_disk(tmp_path, mounts):
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "size=600k")
    mounts.append(disk)
    proc = run(*SMALL, "--workdir", str(disk / "run"))
    assert proc.returncode == 1
    assert errors(proc) == [
        f"error: could not write the checkpoint of step 10 to {disk}/run/checkpoints/10: No space "
        "left on device. No earlier checkpoint exists; free space or fix the permissions, then "
        "resume."
    ]
    assert list((disk / "run" / "checkpoints").iterdir()) == []  # orbax's tmp folder removed


def test_read_only_checkpoint_directory(tmp_path, mounts):
    """chmod does not stop root, so the directory is a read-only mount."""
    workdir = tmp_path / "run"
    mount_tmpfs(workdir / "checkpoints", "ro,size=4m")
    mounts.append(workdir / "checkpoints")
    proc = run(*SMALL, "--workdir", str(workdir))
    assert proc.returncode == 1
    assert errors(proc) == [
        f"error: could not write the checkpoint of step 10 to {workdir}/checkpoints/10: Read-only "
        "file system. No earlier checkpoint exists; free space or fix the permissions, then "
        "resume."
    ]
    assert (workdir / "config.json").exists()


@pytest.mark.slow  # a third failed-write cause; the full disk and read-only mount run by default
def test_a_file_where_the_checkpoint_directory_must_be(tmp_path):
    """Root ignores permission bits; a file in the way is what it still cannot write past."""
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "checkpoints").write_text("not a directory")
    proc = run(*SMALL, "--workdir", str(workdir), "--resume")
    assert proc.returncode == 1
    assert errors(proc)[-1].startswith(
        f"error: could not write the checkpoint of step 10 to {workdir}/checkpoints/10: Not a "
        "directory."
    )
    assert "Traceback" not in proc.stderr


def test_resume_accepts_options_that_do_not_change_the_result(tmp_path, straight):
    workdir = tmp_path / "run"
    shutil.copytree(straight[0], workdir)
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["progress"] is False and saved["checkpoint_every"] == 10
    proc = run(*SMALL[:-2], "--checkpoint-every", "7", "--keep-checkpoints", "5",
               "--workdir", str(workdir), "--resume", progress=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "resumed from step 46" in proc.stdout
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["progress"] is True and saved["checkpoint_every"] == 7
    # ... but not one that does.
    proc = run(*SMALL, "--workdir", str(workdir), "--resume", "--seed", "1")
    assert proc.returncode == 2
    assert errors(proc)[0].startswith("error: --resume: the config differs") and "seed: saved 0, now 1" \
        in errors(proc)[0]


@pytest.mark.parametrize("args, first_line", [
    (["--hidden-size", "-3"], "error: hidden_size must be a positive int; got -3."),
    (["--epochs", "0"], "error: --epochs must be at least 1; got 0."),
    (["--smoke", "--train-examples", "100"],
     "error: --train-examples 100 is less than one batch of 128: raise it or lower --batch-size."),
])
def test_bad_config_prints_one_error_line_and_exits_2(tmp_path, args, first_line):
    proc = run(*args, "--workdir", str(tmp_path / "run"))
    assert proc.returncode == 2
    assert errors(proc) == [first_line]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()  # checked before anything is written or loaded


def test_batch_that_does_not_divide_over_devices_exits_2(tmp_path):
    proc = run("--batch-size", "127", "--devices", "2", "--workdir", str(tmp_path / "run"),
               env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = errors(proc)
    assert line.startswith("error: ") and ("127" in line or "devices" in line), line


def test_an_earlier_run_in_the_workdir_exits_2(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    proc = run("--smoke", "--workdir", str(tmp_path))
    assert proc.returncode == 2
    assert errors(proc)[0].startswith(f"error: {tmp_path} holds an earlier run.")


def test_an_internal_error_keeps_its_traceback():
    """Only the config checks count as a bad config: any other error propagates."""

    def broken(config, workdir):
        raise ValueError("a bug inside training")

    with pytest.raises(ValueError, match="a bug inside training"):
        cli.run(mnist_rows.Config, lambda c: c, broken, args=["--workdir", "/nonexistent/x"])
    with pytest.raises(SystemExit) as exit_info:
        cli.run(mnist_rows.Config, mnist_rows.validate, broken, args=["--hidden-size", "0"])
    assert exit_info.value.code == 2


# Parameters of another cell, size or dtype.

XS = jnp.ones((2, 5, 3))


def callers(cell):
    return {
        "scan": lambda p: sn.scan(cell, p, XS),
        "stack": lambda p: sn.stack(cell).apply([{"forward": p}], XS),
        "apply": lambda p: cell.apply(p, cell.initial_carry(2), XS[:, 0]),
    }


@pytest.mark.parametrize("where", ["scan", "stack", "apply"])
def test_gru_parameters_into_an_lstm(where):
    params = sn.gru(4).init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match=r"unexpected (0/forward/)?b_hn\."):
        callers(sn.lstm(4))[where](params)


@pytest.mark.parametrize("where", ["scan", "stack", "apply"])
def test_lstm8_parameters_into_an_lstm4(where):
    params = sn.lstm(8).init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match=r"parameter (0/forward/)?b has shape \(32,\); the cell "
                                         r"expects \(16,\) for input size 3"):
        callers(sn.lstm(4))[where](params)


@pytest.mark.parametrize("where", ["scan", "stack", "apply"])
def test_parameters_of_another_dtype(where):
    params = jax.tree.map(lambda a: a.astype(jnp.bfloat16), sn.lstm(4).init(jax.random.key(0), 3))
    with pytest.raises(ValueError, match=r"parameter (0/forward/)?b has dtype bfloat16; the cell "
                                         r"expects float32"):
        callers(sn.lstm(4))[where](params)


def test_missing_parameter_is_named():
    params = sn.lstm(4).init(jax.random.key(0), 3)
    del params["w_h"]
    with pytest.raises(ValueError, match=r"seqnets.scan: .*missing w_h\."):
        sn.scan(sn.lstm(4), params, XS)


def test_a_users_own_cell_is_checked_too():
    def init(key, input_size):
        return {"w": jax.random.normal(key, (input_size, 2))}

    cell = sn.make_cell(
        init=init, initial_carry=lambda b: jnp.zeros((b, 2)),
        project=lambda p, x: x @ p["w"], step=lambda p, c, z: (c + z, c + z),
        hidden_size=2, name="mine",
    )
    sn.scan(cell, init(jax.random.key(0), 3), XS)
    with pytest.raises(ValueError, match=r"parameter w has shape \(4, 2\); the cell expects \(3, 2\)"):
        sn.scan(cell, init(jax.random.key(0), 4), XS)


def test_restoring_into_another_model_moves_nothing_aside(tmp_path):
    """A wrong target state is the caller's mistake, not damage: the checkpoint stays."""
    import optax

    def state_of(width):
        params = {"w": jnp.ones((3, width))}
        return create_train_state(params, optax.adam(1e-3), jax.random.key(0))

    ckpt = Checkpointer(tmp_path / "ckpt", save_every=1)
    ckpt.save(state_of(4)._replace(step=jnp.asarray(1, jnp.int32)))
    with pytest.raises(ValueError, match=r"holds another model .*\(\(3, 4\), 'float32'\)"):
        ckpt.restore(state_of(5))
    assert ckpt.all_steps() == [1] and not ckpt.aside_directory.exists()
    assert int(ckpt.restore(state_of(4)).step) == 1
    ckpt.close()


def test_a_checkpoint_saved_under_another_device_count_restores(tmp_path):
    """Not damage: a run saved on 2 devices restores in this 8-device process, in place."""
    script = (
        "import jax, jax.numpy as jnp, optax, sys\n"
        "jax.config.update('jax_num_cpu_devices', 2)\n"
        "from seqnets.parallel import data_mesh, replicate\n"
        "from seqnets.training import Checkpointer, create_train_state\n"
        "s = create_train_state({'w': jnp.arange(12.0).reshape(3, 4)}, optax.adam(1e-3),"
        " jax.random.key(0))\n"
        "Checkpointer(sys.argv[1], save_every=1).save(replicate(s, data_mesh(2)), force=True)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "ckpt")], cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    import optax

    like = create_train_state({"w": jnp.zeros((3, 4))}, optax.adam(1e-3), jax.random.key(0))
    ckpt = Checkpointer(tmp_path / "ckpt", save_every=1)
    state = ckpt.restore(like)
    ckpt.close()
    np.testing.assert_array_equal(state.params["w"], np.arange(12.0).reshape(3, 4))
    assert not (tmp_path / "ckpt.corrupt").exists()
