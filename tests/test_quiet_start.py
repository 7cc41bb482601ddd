"""Start-up noise that TensorFlow and Beam print on a CPU machine stays out of the user's way."""

import subprocess
import sys

from conftest import REPO

# What importing the project's commands would otherwise print before any work: Beam's
# optional Google Cloud clients, and (on a machine with no GPU) TensorFlow's failed cuInit.
NOISE = ("Failed to import GCSFileSystem", "apitools not found", "failed call to cuInit")


def test_importing_tensorflow_and_beam_through_the_project_prints_none_of_the_noise(tmp_path):
    code = ("import realm_tf, logging\n"
            "import apache_beam.io.filesystems, apache_beam.io.gcp.internal.clients.bigquery\n"
            "import tensorflow as tf\n"
            "tf.config.list_physical_devices()\n"
            "logging.getLogger('realm_tf').warning('a warning of our own')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert not [line for line in done.stderr.splitlines() if any(noise in line for noise in NOISE)], done.stderr
    # Other warnings still reach the user.
    assert "a warning of our own" in done.stderr
