"""Every command line: a user's error is one line naming what is wrong, and a traceback only with --verbose."""

import importlib
import subprocess
import sys

import pytest

from conftest import REPO


def _cases(tmp):
    """(module, argv, what the error line must name) for one bad input of each command line."""
    missing = tmp / "absent"
    a_file = tmp / "a_file"
    a_file.write_text("not a directory\n")
    return [
        ("realm_tf.train", ["--task=ict", "--config=no_such_config", f"--blocks_dir={missing}",
                            f"--model_dir={tmp / 'model'}"], "no_such_config"),
        ("realm_tf.train", ["--task=ict", "--config=tiny", "--override=ict.no_such_field=1",
                            f"--blocks_dir={missing}", f"--model_dir={tmp / 'model'}"], "no_such_field"),
        ("beam_pipelines.chunk_corpus", [f"--input={missing}", f"--output_dir={tmp / 'blocks'}"], str(missing)),
        ("beam_pipelines.make_pretraining_examples", [f"--blocks_dir={missing}", f"--output_dir={tmp / 'ex'}"],
         str(missing)),
        ("beam_pipelines.embed_and_index", [f"--blocks_dir={missing}", f"--embedder_export={missing}",
                                            f"--index_root={tmp / 'index'}"], str(missing)),
        ("beam_pipelines.refresh", [f"--model_dir={tmp / 'model'}", f"--blocks_dir={missing}",
                                    f"--index_root={tmp / 'index'}", "--config=no_such_config", "--once"],
         "no_such_config"),
        ("realm_tf.evaluate", [f"--saved_model={missing}", f"--qa={missing}.jsonl"], str(missing)),
        ("realm_tf.evaluate_retrieval", [f"--qa={missing}.jsonl", f"--blocks_dir={missing}", f"--index={missing}"],
         str(missing)),
        ("realm_tf.export.__main__", [f"--model_dir={missing}", f"--output={tmp / 'export'}"], str(missing)),
        ("realm_tf.checkpoints.__main__", ["inspect", str(missing)], str(missing)),
        ("realm_tf.serving.client", ["--server=no-port-here", "a question"], "no-port-here"),
        ("realm_tf.serving.client", ["--server=localhost:8500", f"--questions_file={missing}"], str(missing)),
        ("realm_tf.serving.demo", [f"--saved_model={missing}"], str(missing)),
        ("realm_tf.quickstart", [f"--workdir={a_file}"], str(a_file)),
    ]


CASE_IDS = ["train-config", "train-override", "chunk_corpus", "make_pretraining_examples", "embed_and_index",
            "refresh", "evaluate", "evaluate_retrieval", "export", "checkpoints", "client-server",
            "client-questions_file", "demo", "quickstart"]


@pytest.mark.parametrize("index", range(len(CASE_IDS)), ids=CASE_IDS)
def test_a_user_error_is_one_line_naming_the_culprit(tmp_path, capsys, index):
    module, argv, culprit = _cases(tmp_path)[index]
    status = importlib.import_module(module).main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and culprit in errors[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize("index", [0, 2, 10], ids=[CASE_IDS[i] for i in (0, 2, 10)])
def test_verbose_adds_the_traceback(tmp_path, capsys, index):
    module, argv, culprit = _cases(tmp_path)[index]
    status = importlib.import_module(module).main(argv + ["--verbose"])
    err = capsys.readouterr().err
    assert status == 2
    assert "Traceback (most recent call last)" in err
    assert err.rstrip().splitlines()[-1].startswith("error: ") and culprit in err.rstrip().splitlines()[-1]


MODULES = ["realm_tf.train", "beam_pipelines.chunk_corpus", "beam_pipelines.make_pretraining_examples",
           "beam_pipelines.embed_and_index", "beam_pipelines.refresh", "realm_tf.evaluate", "realm_tf.evaluate_retrieval",
           "realm_tf.export.__main__", "realm_tf.serving.client", "realm_tf.serving.demo", "realm_tf.quickstart"]


@pytest.mark.parametrize("module", MODULES)
def test_help_lists_verbose(capsys, module):
    with pytest.raises(SystemExit) as exited:
        importlib.import_module(module).main(["--help"])
    assert exited.value.code == 0
    assert "--verbose" in capsys.readouterr().out


def test_every_checkpoints_subcommand_takes_verbose(capsys):
    from realm_tf.checkpoints.__main__ import build_arg_parser

    commands = build_arg_parser()._subparsers._group_actions[0].choices
    assert set(commands) == {"inspect", "fetch", "config", "convert-blocks", "import-index"}
    for name, sub in commands.items():
        assert "--verbose" in sub.format_help(), name


def test_in_a_fresh_process_a_bad_config_is_one_line_and_verbose_shows_where(tmp_path):
    command = [sys.executable, "-m", "realm_tf.train", "--task=ict", "--config=no_such_config",
               f"--blocks_dir={tmp_path}", f"--model_dir={tmp_path / 'model'}"]
    plain = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert plain.returncode == 2
    assert "Traceback" not in plain.stderr
    assert [line for line in plain.stderr.splitlines() if line.startswith("error:")] == [
        line for line in plain.stderr.splitlines() if "no_such_config" in line]
    verbose = subprocess.run(command + ["--verbose"], cwd=REPO, capture_output=True, text=True)
    assert verbose.returncode == 2
    assert "Traceback (most recent call last)" in verbose.stderr and "load_config" in verbose.stderr


def test_run_command_reports_hints_statuses_and_interrupts_and_lets_bugs_through(capsys):
    from realm_tf.cli import run_command
    from realm_tf.errors import RealmError

    class Rejected(RealmError):
        exit_status = 1
        hint = "try the other flag"

    def raising(error):
        def run(argv):
            raise error
        return run

    assert run_command(raising(Rejected("data.jsonl:3: bad")), str, []) == 1
    assert capsys.readouterr().err == "error: data.jsonl:3: bad\n(try the other flag)\n"
    assert run_command(raising(FileNotFoundError(2, "No such file or directory", "x.yaml")), str, []) == 2
    assert capsys.readouterr().err == "error: [Errno 2] No such file or directory: 'x.yaml'\n"
    assert run_command(raising(KeyboardInterrupt()), str, []) == 130
    assert capsys.readouterr().err == "interrupted\n"
    with pytest.raises(ZeroDivisionError):
        run_command(raising(ZeroDivisionError("a bug")), str, [])
    assert run_command(lambda argv: {"argv": argv}, lambda result: f"ran {result['argv']}", ["--x"]) == 0
    assert capsys.readouterr().out == "ran ['--x']\n"
