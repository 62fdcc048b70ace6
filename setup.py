"""Only what pyproject.toml cannot say: the wheel also installs `latentlm-lm_eval.pth` at the top of
site-packages, the startup file that registers latentlm with lm-eval's CLI (see src/_latentlm_lm_eval.py)."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "latentlm-lm_eval.pth"


class BuildPyWithPth(build_py):
    def run(self):
        super().run()
        self.copy_file(str(Path("src") / PTH), str(Path(self.build_lib) / PTH), preserve_mode=0)

    def get_outputs(self, include_bytecode=1):
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / PTH)]


setup(cmdclass={"build_py": BuildPyWithPth})
