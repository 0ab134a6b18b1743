"""The kernel catalog, installed as the data package ``lab.kernels.builtin`` (see pyproject.toml).

This directory is the one place catalog files are edited. This file makes it a regular
package: setuptools' editable install finds a package that lives outside ``lab/`` by its
``__init__.py`` only, and ``lab.kernels.catalog`` reads the catalog through importlib.resources.
"""
