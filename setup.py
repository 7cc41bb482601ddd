from setuptools import setup

# For tools that still want a setup.py (e.g. Dataflow --setup_file); metadata is in setup.cfg.
setup()
