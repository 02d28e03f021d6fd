"""load_long_csv: parsing, missing markers, and errors that point at the bad lines."""

import io
import math

import pytest
import torch

from kutta.data import load_long_csv
from kutta.errors import InvalidArgumentError

GOOD = """series_id,time,heart_rate,temp
a,0.0,80,36.6
b,0.5,,37.0
a,1.5,NaN,
a,2.0,85,NA
b,1.0,90,37.2
"""


def load(text, **options):
    return load_long_csv(io.StringIO(text), **options)


def test_reads_series_in_order_of_first_appearance():
    data = load(GOOD)
    assert data.ids == ["a", "b"] and data.channels == ["heart_rate", "temp"] and len(data) == 2
    times, values = data[0]
    assert times.tolist() == [0.0, 1.5, 2.0]
    assert [[None if math.isnan(v) else v for v in row] for row in values.tolist()] == [
        [80.0, 36.599998474121094],
        [None, None],
        [85.0, None],
    ]
    batch = data.to_batch()
    assert batch.lengths.tolist() == [3, 2]
    assert batch.mask[1].tolist() == [[False, True], [True, True], [False, False]]


def test_reads_files_columns_and_delimiters(tmp_path):
    path = tmp_path / "series.tsv"
    path.write_text("time\tid\tx\ty\n0\ts\t1\t2\n1\ts\t3\t4\n")
    data = load_long_csv(path, id_column="id", channels=["y"], delimiter="\t", dtype=torch.float64)
    assert data.channels == ["y"] and data.values[0].tolist() == [[2.0], [4.0]]
    assert data.times[0].dtype == torch.float64


def test_byte_order_mark_is_ignored(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("series_id,time,x\na,0,1\n".encode("utf-8-sig"))
    assert load_long_csv(path).ids == ["a"]
    assert load("\ufeffseries_id,time,x\na,0,1\n").ids == ["a"]


def test_unreadable_csv():
    with pytest.raises(InvalidArgumentError, match="line 3: unreadable CSV"):
        load('series_id,time,x\na,0,1\na,1,"2"3\n')


def test_quoted_fields_and_blank_lines():
    data = load('series_id,time,x\n"a,1",0,1\n\n"a,1",1,"2"\n')
    assert data.ids == ["a,1"] and data.values[0].flatten().tolist() == [1.0, 2.0]


def test_bad_rows_are_listed_with_line_numbers():
    text = (
        "series_id,time,x\n"
        "a,0,1\n"
        "a,1\n"  # line 3: too few fields
        "a,two,1\n"  # line 4: time not a number
        "a,3,abc\n"  # line 5: value not a number
        ",4,1\n"  # line 6: no id
        "a,,1\n"  # line 7: missing time
        "a,5,inf\n"  # line 8: infinite value
    )
    with pytest.raises(InvalidArgumentError) as error:
        load(text)
    message = str(error.value)
    assert message.startswith("malformed rows:")
    for expected in [
        "line 3: expected 3 fields (as in the header), found 2",
        "line 4: time 'two' is not a finite number",
        "line 5: value 'abc' is not a number",
        "line 6: empty series id",
        "line 7: time '' is not a finite number",
        "line 8: value 'inf' is not a number",
    ]:
        assert expected in message
    assert "line 2" not in message


def test_many_bad_rows_are_summarised():
    text = "series_id,time,x\n" + "".join(f"a,{i},oops\n" for i in range(15))
    with pytest.raises(InvalidArgumentError, match="and 5 more"):
        load(text)


def test_non_increasing_times_name_the_series_and_lines():
    text = "series_id,time,x\na,0,1\nb,0,1\na,2,1\na,2,3\nb,-1,2\n"
    with pytest.raises(InvalidArgumentError) as error:
        load(text)
    message = str(error.value)
    assert "strictly increasing within each series" in message
    assert "series 'a': time 2.0 on line 5 is not after 2.0 on line 4" in message
    assert "series 'b': time -1.0 on line 6 is not after 0.0 on line 3" in message


def test_columns_missing_everywhere():
    with pytest.raises(
        InvalidArgumentError, match="columns \\['y'\\] are missing \\(empty or NaN\\) in every row"
    ):
        load("series_id,time,x,y\na,0,1,\na,1,2,nan\n")


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ("", {}, "empty; expected a header row"),
        ("series_id,time,x\n", {}, "no data rows"),
        ("id,time,x\na,0,1\n", {}, "columns \\['series_id'\\] not in the header"),
        ("series_id,time,x,x\n", {}, "duplicate column names in the header: \\['x'\\]"),
        ("series_id,time\na,0\n", {}, "no channel columns"),
        ("series_id,time,x\na,0,1\n", {"channels": ["z"]}, "columns \\['z'\\] not in the header"),
        ("series_id,time,x\na,0,1\n", {"channels": ["time"]}, "exclude the id and time columns"),
    ],
)
def test_bad_headers(text, options, message):
    with pytest.raises(InvalidArgumentError, match=message):
        load(text, **options)
