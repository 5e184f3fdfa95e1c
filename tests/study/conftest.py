"""Shared fixtures of the study tests."""

import pytest

from spindoctor.study import pipeline
from spindoctor.study.runfolder import STAGE_DIRS
from spindoctor.study.stages import STAGES


@pytest.fixture
def calls(monkeypatch):
    """Replace every stage by a fake writing one file into each of its folders; the list records which ran."""
    ran = []

    def make(name):
        def stage(ctx):
            """A fake stage."""
            ran.append(name)
            for d in STAGE_DIRS[name]:
                (ctx.run / d).mkdir(exist_ok=True)
                (ctx.run / d / f"{name}.out").write_text(name)
            return {"fake": name}
        return stage

    monkeypatch.setattr(pipeline, "STAGES", [(name, make(name)) for name, _ in STAGES])
    return ran
