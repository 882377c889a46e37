"""The ``driftcar`` command line as a user meets it: help, typos, and the package's public names."""

from __future__ import annotations

import re

import pytest

import driftcar
from driftcar.cli import build_parser, main
from driftcar.sidecar.config import OPTIONS


def test_sidecar_help_states_each_default_once(capsys):
    with pytest.raises(SystemExit):
        main(["sidecar", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "default: None" not in text
    for option in OPTIONS:
        if option.default not in (None, (), {}) and option.parse.__name__ != "_bool":
            assert text.count(f"(default {option.default})") >= 1, option.key
    assert len(re.findall(r"\(default 127\.0\.0\.1:14317\)", text)) == 1


@pytest.mark.parametrize("argv, hint", [
    (["sidecar", "--windw", "5s"], "--windw: did you mean --window"),
    (["sidecar", "--refrence=a.driftcar"], "--refrence: did you mean --reference"),
])
def test_a_mistyped_flag_gets_did_you_mean(capsys, argv, hint):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments" in err and hint in err
    assert "--bins" not in err  # only the chosen sub-command's flags are suggested


def test_an_unrelated_argument_gets_no_invented_suggestion(capsys):
    with pytest.raises(SystemExit):
        main(["sidecar", "--zzzzzz"])
    assert "did you mean" not in capsys.readouterr().err


def test_parser_builds_every_sub_command():
    assert {"sidecar", "profile", "demo"} <= set(build_parser()._subparsers._group_actions[0].choices)


def test_dir_lists_only_the_public_api():
    names = dir(driftcar)
    assert names == sorted(driftcar.__all__)
    assert "Any" not in names and "annotations" not in names
    for name in names:
        getattr(driftcar, name)  # every listed name resolves
