import json

import pytest

from metatransformer.datasets import ReadError, read, read_document, read_text

TEXT = "Première ligne, with ünïcode.\n\n  second line\nthird line\n"


def test_a_plain_file_is_one_text_as_stored(tmp_path):
    path = tmp_path / "doc.txt"
    path.write_text(TEXT, encoding="utf-8")
    assert read_text(path) == [TEXT]
    assert read_document(path) == TEXT
    assert read(path) == TEXT  # the registered reader of .txt files


def test_lines_skip_blank_lines(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text(TEXT, encoding="utf-8")
    assert read_text(path, unit="line") == ["Première ligne, with ünïcode.", "  second line", "third line"]


def test_csv_tsv_and_jsonl_rows_of_a_text_column(tmp_path):
    csv_path = tmp_path / "rows.csv"
    csv_path.write_text('id,text\n1,"a, quoted\nmulti-line text"\n2,plain\n', encoding="utf-8")
    assert read_text(csv_path) == ["a, quoted\nmulti-line text", "plain"]
    tsv_path = tmp_path / "rows.tsv"
    tsv_path.write_text("body\tlabel\nfirst, with comma\t0\nsecond\t1\n", encoding="utf-8")
    assert read_text(tsv_path, column="body") == ["first, with comma", "second"]
    jsonl_path = tmp_path / "rows.jsonl"
    jsonl_path.write_text("\n".join(json.dumps({"text": t, "label": i}) for i, t in enumerate(["α β", "γ"])) + "\n")
    assert read_text(jsonl_path) == ["α β", "γ"]


@pytest.mark.parametrize("name, content, reason", [
    ("blank.txt", b"  \n\t\n", "empty"),
    ("latin1.txt", "caf\xe9".encode("latin-1"), "not utf-8"),
    ("binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not utf-8"),
    ("nocol.csv", b"id,body\n1,hello\n", "no 'text' column"),
    ("emptycell.csv", b"id,text\n1,hello\n2,\n", "row 1 has an empty 'text'"),
    ("header.csv", b"id,text\n", "no rows"),
    ("bad.jsonl", b'{"text": "ok"}\n{"text": broken\n', "line 2 is not JSON"),
    ("nofield.jsonl", b'{"body": "x"}\n', "line 1 has no string field 'text'"),
])
def test_malformed_files_raise_read_error_naming_the_file(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ReadError, match=reason) as info:
        read_text(path)
    assert str(path) in str(info.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ReadError, match="no such file"):
        read_text(tmp_path / "absent.txt")
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(ReadError, match="empty"):
        read(tmp_path / "empty.txt")


def test_the_document_reader_refuses_a_file_of_several_texts(tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("text\nfirst row\nsecond row\n")
    with pytest.raises(ReadError, match="rows.csv: one document is read from .txt files"):
        read(rows, modality="text")
