"""The kernel × test table at the end of a pytest run: the reports of the session, rendered as ``lab report`` renders JUnit."""

from lab.report.report import merge, pytest_case, render_table


def test_test_name_drops_the_kernel_param():
    case = pytest_case("tests/test_hello.py::test_x[6.1-amd64]", when="call", outcome="passed",
                       properties={"kernel": "6.1-amd64"})
    assert (case.test, case.kernel, case.outcome) == ("tests.test_hello::test_x", "6.1-amd64", "pass")
    # Another parameter stays with the test; a class is part of its name, as in pytest's JUnit XML.
    other = pytest_case("tests/test_a.py::TestB::test_c[6.1-amd64-big]", when="call", outcome="failed",
                        properties={"kernel": "6.1-amd64"})
    assert (other.test, other.outcome) == ("tests.test_a.TestB::test_c[big]", "fail")
    # Under pytest-xdist's --dist loadgroup the node id ends in "@<group>": not part of the name.
    grouped = pytest_case("tests/test_hello.py::test_x[6.1-amd64]@6.1-amd64", when="call", outcome="passed",
                          properties={"kernel": "6.1-amd64"})
    assert grouped.test == "tests.test_hello::test_x"
    # A failing setup (the boot) is an error, as JUnit XML has it.
    assert pytest_case("t.py::test_d[k]", when="setup", outcome="failed", properties={"kernel": "k"}).outcome == "error"


def test_table_has_a_column_per_kernel_and_times():
    reports = [
        ("tests/test_hello.py::test_a[5.10-amd64]", "skipped", {"kernel": "5.10-amd64"}),
        ("tests/test_hello.py::test_a[6.1-amd64]", "passed", {"kernel": "6.1-amd64", "boot_seconds": 15.5}),
        ("tests/test_hello.py::test_b[6.1-amd64]", "failed", {"kernel": "6.1-amd64", "lab_seconds": 20.0}),
    ]
    cases = [pytest_case(nodeid, when="call", outcome=outcome, properties=props) for nodeid, outcome, props in reports]
    lines = render_table(merge(cases), verdicts=False).splitlines()
    assert lines[0].split() == ["test", "5.10-amd64", "6.1-amd64"]
    assert lines[1].split() == ["test_hello::test_a", "SKIP", "PASS"]
    assert lines[2].split() == ["test_hello::test_b", "-", "FAIL"]
    # pytest prints the counts and failures itself; the times per kernel follow the table.
    assert lines[3:] == ["", "time per kernel: 5.10-amd64 0s; 6.1-amd64 36s (boot 16s, attach 0s, lab 20s)"]
