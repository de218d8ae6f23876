"""The admin stand-in's checksum format (lib/sqlite3db.cpp, SQLite3_result::checksum)."""

import re

import pytest

pytest.importorskip("mysql_mimic")
from standin.proxysql_admin import checksum  # noqa: E402


def test_no_rows_is_0x00_as_proxysql_prints_a_zero_hash():
    assert checksum([]) == "0x00"


def test_the_format_is_two_unpadded_hex_halves():
    value = checksum([("app", 1, None)])
    assert re.fullmatch(r"0x[0-9A-F]{1,8}[0-9A-F]{1,8}", value)


def test_fields_are_hashed_as_one_byte_stream_with_null_as_empty():
    # ProxySQL feeds each field's bytes with no separator, NULL as no bytes.
    assert checksum([("ab", "c")]) == checksum([("a", "bc")]) == checksum([("abc", None)])
    assert checksum([("abc",)]) != checksum([("abd",)])
