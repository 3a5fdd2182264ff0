"""Only a workaround: the whole configuration is in pyproject.toml.

setuptools' editable builds (`pip install -e .`) look for `Distribution.has_data()`, which does not
exist (the method is `has_data_files()`), so they silently leave out `[tool.setuptools.data-files]`:
the Jupyter kernel spec share/jupyter/kernels/splip would only be installed by a non-editable
`pip install .`. This alias makes `pip install -e .` install it too (setuptools 68 to 84 at least).
"""
from setuptools import setup
from setuptools.dist import Distribution


class _Distribution(Distribution):
    def has_data(self) -> bool:
        return self.has_data_files()


setup(distclass=_Distribution)
