"""The module pytest loads through the ``pytest11`` entry point: the hooks and fixtures of
options.py, fixtures.py and reporting.py, gathered where pytest looks for them, and splats.py.

Each selected kernel is booted once per session (again only if a test killed its guest);
tests are grouped by kernel.
"""

from __future__ import annotations

from lab.pytest_plugin.fixtures import (  # noqa: F401  (pytest finds them here)
    _lab_bpf_marker,
    _lab_guest_slot,
    bpf_features,
    kernel,
    pytest_collection_modifyitems,
    pytest_generate_tests,
    pytest_sessionfinish,
    vm,
)
from lab.pytest_plugin.options import (  # noqa: F401
    pytest_addoption,
    pytest_cmdline_main,
    pytest_configure,
    pytest_configure_node,
)
from lab.pytest_plugin.reporting import (  # noqa: F401
    pytest_report_header,
    pytest_runtest_makereport,
    pytest_terminal_summary,
)

# A plugin of its own: its pytest_runtest_makereport wraps reporting.py's (one module cannot hold both).
pytest_plugins = ["lab.pytest_plugin.splats"]
