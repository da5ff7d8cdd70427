"""Tests of processor.reports.tree: which installation directories the fan-out sees."""

import logging

from processor.reports.tree import InstallationDir, installation_dirs, is_canonical_id


def test_canonical_ids():
    assert all(is_canonical_id(text) for text in ["1", "23", "9223372036854775807"])
    assert not any(
        is_canonical_id(text) for text in ["0", "01", "-1", "+1", "1.0", "abc", " 1", "9223372036854775808", "١"]
    )


def test_values_of_other_types_are_no_ids():
    """H11: a message may carry an integer or a list where the ids go."""
    assert not any(is_canonical_id(value) for value in [23, 23.0, ["23"], None, b"23", True])


def test_lists_installations_in_numeric_order_and_skips_everything_else(tmp_path, caplog):
    for relative in ["10/2", "10/1", "9/100", "9/abc", "007/1", "x/1", "3/.hidden"]:
        (tmp_path / relative).mkdir(parents=True)
    (tmp_path / "5").write_text("a file, not a user directory")
    (tmp_path / "9" / "7").symlink_to(tmp_path / "10" / "1")
    (tmp_path / "11").symlink_to(tmp_path / "10")

    with caplog.at_level(logging.WARNING):
        found = list(installation_dirs(tmp_path))

    assert [(9, 100), (10, 1), (10, 2)] == [(d.user, d.installation) for d in found]
    assert InstallationDir(9, 100, tmp_path / "9" / "100") == found[0]
    skipped = {record.fields.get("installation", record.fields["user"]) for record in caplog.records}
    assert {"abc", "007", "x", "5", "7", "11"} == skipped
