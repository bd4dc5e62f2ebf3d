"""The byte scan that decides whether a CSV file can be streamed with exact line numbers."""

from __future__ import annotations

import pytest

from lit_verbrec.data import csv_files

CASES = {
    b'a,b\n1,2\n3,4\n': True,
    b'a,b\n"x,""q""",2\n3,4\n': True,          # doubled quotes inside a cell: even per line
    b'a,b\n"1","2"\n"3","4"': True,             # no newline at the end
    b'a,b\n"x\ny",2\n': False,                 # a cell across two lines
    b'a,b\n\n1,2\n': False,                    # a blank line
    b'a,b\r\n1,2\r\n\r\n3,4\r\n': False,       # a blank line, Windows line ends
    b'a,b\n1,2\n\n': False,                    # a blank line at the end
    b'a,b\n"1\n': False,                       # a quote never closed
}


@pytest.mark.parametrize("block", [3, 5, 7, 1 << 20])
@pytest.mark.parametrize(("data", "one_per_line"), CASES.items())
def test_records_one_per_line_whatever_the_block_boundaries(tmp_path, monkeypatch, data, one_per_line, block):
    monkeypatch.setattr(csv_files, "CSV_BLOCK_BYTES", block)
    (tmp_path / "log.csv").write_bytes(data)
    assert csv_files.one_record_per_line(tmp_path / "log.csv", "utf-8") is one_per_line


def test_an_encoding_that_is_not_ascii_compatible_is_never_byte_scanned(tmp_path):
    (tmp_path / "log.csv").write_bytes("a,b\n1,2\n".encode("utf-16"))
    assert csv_files.one_record_per_line(tmp_path / "log.csv", "utf-16") is False
