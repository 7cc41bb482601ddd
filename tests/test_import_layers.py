"""The package order of setup.cfg's [importlinter] contracts holds in the code (import-linter)."""

import configparser
import pathlib
import subprocess
import sys

from conftest import REPO

# Installed with the test extra, beside this interpreter.
LINT_IMPORTS = pathlib.Path(sys.executable).parent / "lint-imports"


def _lint(config_path) -> subprocess.CompletedProcess:
    # Run from the repository so that the packages it analyses are this checkout's.
    command = [str(LINT_IMPORTS), "--config", str(config_path), "--no-cache"]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_every_package_imports_only_the_layers_below_it():
    result = _lint(REPO / "setup.cfg")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_an_import_against_the_order_is_reported(tmp_path):
    # The same contract with two layers swapped: realm_tf.cli imports realm_tf.errors, so
    # errors above cli must break it, naming that import.
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    layers = config["importlinter:contract:layers"]["layers"].strip().splitlines()
    assert layers[-2:] == ["realm_tf.cli", "realm_tf.errors"]
    config["importlinter:contract:layers"]["layers"] = "\n".join(layers[:-2] + ["realm_tf.errors", "realm_tf.cli"])
    swapped = tmp_path / "setup.cfg"
    with open(swapped, "w", encoding="utf-8") as f:
        config.write(f)
    result = _lint(swapped)
    assert result.returncode == 1
    assert "realm_tf.cli -> realm_tf.errors" in result.stdout
