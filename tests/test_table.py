from lab.table import kernel_table, short_test_name


def test_test_name_drops_the_kernel_param():
    assert short_test_name("tests/test_hello.py::test_x[6.1-amd64]") == "test_hello.py::test_x"


def test_table_has_a_column_per_kernel_and_times():
    rows = [
        ("tests/test_hello.py::test_a[5.10-amd64]", "skipped", {"kernel": "5.10-amd64"}),
        ("tests/test_hello.py::test_a[6.1-amd64]", "passed", {"kernel": "6.1-amd64", "boot_seconds": 15.5}),
        ("tests/test_hello.py::test_b[6.1-amd64]", "failed", {"kernel": "6.1-amd64", "lab_seconds": 20.0}),
    ]
    lines = kernel_table(rows)
    assert lines[0].split() == ["test", "5.10-amd64", "6.1-amd64"]
    assert lines[1].split() == ["test_hello.py::test_a", "skip", "pass"]
    assert lines[2].split() == ["test_hello.py::test_b", "-", "FAIL"]
    assert lines[3].split() == ["boot", "(s)", "-", "15.5"]
    assert lines[4].split() == ["labs", "(s)", "-", "20.0"]
