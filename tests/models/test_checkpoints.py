"""The run folder's checkpoint layout: names, steps, the guard, the atomic writer, optimizer state."""

from __future__ import annotations

import os
import stat

import pytest

from spindoctor.errors import UserError
from spindoctor.models.checkpoints import (
    TEMP_RE,
    check_checkpoint,
    checkpoint_path,
    checkpoint_step,
    has_checkpoints,
    is_complete,
    last_checkpoint,
    last_checkpoint_step,
    list_checkpoints,
    load_optimizer,
    remove_partial_checkpoints,
    save_optimizer,
    writing_checkpoint,
)


def test_one_step_parser_for_every_name(tmp_path):
    assert checkpoint_step(checkpoint_path(tmp_path, 40)) == 40
    for other in ("checkpoint-", "checkpoint-4a", "checkpoint-1-2", ".checkpoint-3.x.tmp", "step-3", "checkpoint_3"):
        assert checkpoint_step(tmp_path / other) is None, other


def test_steps_are_listed_in_numeric_order_and_files_are_ignored(tmp_path):
    assert list_checkpoints(tmp_path / "absent") == [] and last_checkpoint_step(tmp_path) == 0
    for step in (10, 2, 100):
        checkpoint_path(tmp_path, step).mkdir()
    (tmp_path / "checkpoint-7").write_text("a file, not a checkpoint")
    (tmp_path / ".checkpoint-200.abc.tmp").mkdir()
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 10, 100]
    assert last_checkpoint_step(tmp_path) == 100 and last_checkpoint(tmp_path) == checkpoint_path(tmp_path, 100)
    assert has_checkpoints(tmp_path) and not has_checkpoints(tmp_path / "absent")


def test_the_guard_refuses_missing_folders_pickles_and_configless_folders(tmp_path):
    with pytest.raises(UserError, match="checkpoint folder not found"):
        check_checkpoint(tmp_path / "nope")
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(UserError, match="no \\*.safetensors weights"):
        check_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert check_checkpoint(tmp_path) == tmp_path and not is_complete(tmp_path)
    with pytest.raises(UserError, match="no config.json"):
        check_checkpoint(tmp_path, need_config=True)
    (tmp_path / "config.json").write_text("{}")
    assert check_checkpoint(tmp_path, need_config=True) == tmp_path and is_complete(tmp_path)


def test_the_writer_renames_a_whole_folder_into_place(tmp_path):
    with writing_checkpoint(tmp_path, 5) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".checkpoint-5.") and TEMP_RE.match(tmp.name)
        assert not checkpoint_path(tmp_path, 5).exists()  # nothing under the final name while writing
        (tmp / "model.safetensors").write_bytes(b"new")
    final = checkpoint_path(tmp_path, 5)
    assert (final / "model.safetensors").read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == [final.name]
    plain = tmp_path / "plain"
    plain.mkdir()
    assert stat.S_IMODE(os.stat(final).st_mode) == stat.S_IMODE(os.stat(plain).st_mode)


def test_a_failed_write_leaves_the_old_checkpoint_and_no_temporary_folder(tmp_path):
    with writing_checkpoint(tmp_path, 5) as tmp:
        (tmp / "model.safetensors").write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"), writing_checkpoint(tmp_path, 5) as tmp:
        (tmp / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("disk full")
    assert (checkpoint_path(tmp_path, 5) / "model.safetensors").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-5"]


def test_two_writers_of_one_step_get_distinct_temporary_folders(tmp_path):
    with writing_checkpoint(tmp_path, 1) as a, writing_checkpoint(tmp_path, 1) as b:
        assert a != b


def _writer_temp_name(run, step):
    """The name of the temporary folder the writer uses (a killed writer leaves it behind)."""
    with pytest.raises(KeyboardInterrupt), writing_checkpoint(run, step) as tmp:
        raise KeyboardInterrupt
    return tmp.name


@pytest.mark.parametrize("name, removed", [
    (None, True),                             # the writer's own name, whatever it is
    (".checkpoint-3.ab_cd12e.tmp", True),     # tempfile.mkdtemp's name (earlier versions)
    (".checkpoint-notes", False),
    (".checkpoint-3", False),
    (".checkpoint-3.x1.tmp", False),
    (".checkpoint-3.abcdefgh.tmp.bak", False),
    (".checkpoint-3.abcdefgh.old", False),
], ids=["writer-name", "mkdtemp-name", "user-notes", "no-token", "short-token", "extra-suffix", "aside-folder"])
def test_only_the_writers_temporary_folders_are_removed(name, removed, tmp_path):
    name = name or _writer_temp_name(tmp_path, 3)
    (tmp_path / name).mkdir()
    (tmp_path / name / "mine.txt").write_text("keep?")
    checkpoint_path(tmp_path, 2).mkdir()
    remove_partial_checkpoints(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["checkpoint-2"] + ([] if removed else [name]))


def test_a_file_with_a_temporary_name_is_kept(tmp_path):
    (tmp_path / ".checkpoint-3.abcdefgh.tmp").write_text("a user's file")
    remove_partial_checkpoints(tmp_path)
    remove_partial_checkpoints(tmp_path / "absent")
    assert (tmp_path / ".checkpoint-3.abcdefgh.tmp").read_text() == "a user's file"


@pytest.mark.parametrize("files", [
    [],
    ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
     "chat_template.jinja", "probe.json"],
    ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json",
     "value_head.safetensors", "optimizer.safetensors", "optimizer.json", "trainer_state.json", "vocab.json",
     "merges.txt"],
], ids=["empty-folder", "sft-checkpoint", "sharded-ppo-checkpoint"])
def test_a_checkpoint_this_code_wrote_is_replaced(files, tmp_path):
    final = checkpoint_path(tmp_path, 5)
    final.mkdir()
    for name in files:
        (final / name).write_text("old")
    with writing_checkpoint(tmp_path, 5) as tmp:
        (tmp / "model.safetensors").write_bytes(b"new")
    assert [p.name for p in final.iterdir()] == ["model.safetensors"]
    assert (final / "model.safetensors").read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-5"]


def _foreign(final, kind):
    if kind == "file":
        final.write_text("my notes")
        return
    final.mkdir()
    (final / "model.safetensors").write_text("old")
    if kind == "notes":
        (final / "notes.txt").write_text("mine")
    elif kind == "subfolder":
        (final / "eval").mkdir()
    elif kind == "symlink":
        (final.parent / "elsewhere.json").write_text("{}")
        (final / "config.json").symlink_to(final.parent / "elsewhere.json")


@pytest.mark.parametrize("kind", ["notes", "subfolder", "symlink", "file"],
                         ids=["user-file-inside", "subfolder-inside", "symlinked-config", "a-file-not-a-folder"])
def test_a_folder_this_code_did_not_write_is_refused_before_writing(kind, tmp_path):
    final = checkpoint_path(tmp_path, 5)
    _foreign(final, kind)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    entered = []
    with pytest.raises(UserError, match="move it away"), writing_checkpoint(tmp_path, 5):
        entered.append(True)
    assert not entered and sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_file_appearing_while_writing_blocks_the_replacement(tmp_path):
    final = checkpoint_path(tmp_path, 5)
    final.mkdir()
    (final / "model.safetensors").write_text("old")
    with pytest.raises(UserError, match="notes.txt"), writing_checkpoint(tmp_path, 5) as tmp:
        (tmp / "model.safetensors").write_text("new")
        (final / "notes.txt").write_text("mine")
    assert sorted(p.name for p in final.iterdir()) == ["model.safetensors", "notes.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-5"]


def test_optimizer_state_round_trips_through_safetensors(tmp_path):
    import torch

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(4, 3)).sum().backward()
    opt.step()
    save_optimizer(opt, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"optimizer.safetensors", "optimizer.json"}
    fresh = torch.optim.Adam(model.parameters(), lr=0.5)
    load_optimizer(fresh, tmp_path)
    for (_, a), (_, b) in zip(sorted(opt.state_dict()["state"].items()), sorted(fresh.state_dict()["state"].items()),
                              strict=True):
        assert all(torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])) for k in a)
    assert fresh.param_groups[0]["lr"] == 0.1
