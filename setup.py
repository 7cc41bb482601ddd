"""For tools that still want a setup.py (e.g. Dataflow --setup_file); metadata is in setup.cfg.

The named configs live in configs/ at the top of the repository. A built package (a wheel,
or what Dataflow workers install from --setup_file) carries copies in
realm_tf/configs/named/, where an installed realm_tf looks for them.
"""

import glob
import os

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithNamedConfigs(build_py):
    """build_py, then configs/*.yaml into the built package's realm_tf/configs/named/."""

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "realm_tf", "configs", "named")
        self.mkpath(target)
        for path in sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "*.yaml"))):
            self.copy_file(path, target)


setup(cmdclass={"build_py": BuildPyWithNamedConfigs})
