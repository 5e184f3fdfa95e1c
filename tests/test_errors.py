"""spindoctor.errors.one_line_warnings: the CLI's one-line warnings (the study's notices, SFT resume)."""

import warnings

import pytest

from spindoctor.errors import one_line_warnings
from spindoctor.study.runfolder import StudyNotice
from spindoctor.training.sft_resume import ResumeWarning


@pytest.mark.parametrize("category", [StudyNotice, ResumeWarning], ids=["study-notice", "sft-resume"])
def test_the_chosen_category_is_one_line_and_others_go_to_the_old_handler(category, capsys):
    passed = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = one_line_warnings(lambda message, cat, *a, **k: passed.append(cat), category)
        warnings.warn("sft: finished earlier, rerun", category, stacklevel=1)
        warnings.warn("something else", UserWarning, stacklevel=1)
    assert capsys.readouterr().err == "warning: sft: finished earlier, rerun\n"
    assert passed == [UserWarning]
