"""The package as a wheel installs it (not editable): Dataflow workers get it so from --setup_file."""

import pathlib
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

from conftest import REPO

NAMED = ("base", "minilm", "tiny")


def test_an_installed_wheel_finds_the_named_configs(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "--wheel-dir", str(tmp_path / "dist"), str(REPO)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("realm_tf-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for name in NAMED:
        assert f"realm_tf/configs/named/{name}.yaml" in names
        assert (REPO / "configs" / f"{name}.yaml").read_bytes() == zipfile.ZipFile(wheel).read(
            f"realm_tf/configs/named/{name}.yaml")

    # A fresh venv holding the wheel alone; the dependencies come from this one's site-packages
    # (a .pth line: its own .pth files, this checkout's editable install among them, stay unread).
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (pathlib.Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                                "--no-index", str(wheel)], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr[-3000:]

    where = subprocess.run([str(python), "-c", "import realm_tf.configs as c; print(c.__file__); print(c.CONFIG_DIR)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split()
    assert where[0].startswith(site) and where[1] == f"{site}/realm_tf/configs/named", where
    command = [str(python), "-m", "realm_tf.train", "--task=ict", f"--blocks_dir={tmp_path / 'no_blocks'}",
               f"--model_dir={tmp_path / 'model'}"]
    ran = subprocess.run(command + ["--config=tiny"], cwd=tmp_path, capture_output=True, text=True)
    # The config was found: the run stops at the next thing, the missing blocks.
    assert ran.returncode == 2 and f"error: {tmp_path / 'no_blocks'}/manifest.json: no manifest" in ran.stderr, \
        ran.stderr[-3000:]
    unknown = subprocess.run(command + ["--config=no_such"], cwd=tmp_path, capture_output=True, text=True)
    assert f"not one of {list(NAMED)} in {site}/realm_tf/configs/named" in unknown.stderr, unknown.stderr[-3000:]


def test_the_source_distribution_carries_the_named_configs(tmp_path):
    built = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)], cwd=REPO,
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    (sdist,) = tmp_path.glob("realm_tf-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {f"configs/{name}.yaml" for name in NAMED} <= names and "setup.py" in names
