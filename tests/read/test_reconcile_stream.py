"""The streaming JSON reader against the standard library (fuzzed), and a 50 MB activity file read
in bounded memory (measured in a fresh process)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from helpers import run_python
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spendlog.db.jsonstream import JSONStreamError, iter_items

scalars = (st.none() | st.booleans() | st.integers(-10**30, 10**30)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
documents = st.one_of(
    st.lists(values, max_size=6),
    st.builds(lambda data, extra: {**extra, "data": data}, st.lists(values, max_size=6),
              st.dictionaries(st.text(max_size=6).filter(lambda k: k != "data"), values, max_size=3)),
)


def _chunks(text: str, sizes: list[int]):
    i = 0
    for n in sizes * (len(text) // max(1, sum(sizes)) + 1):
        if i >= len(text):
            return
        yield text[i : i + n]
        i += n
    yield text[i:]


def _reference(text: str):
    doc = json.loads(text, parse_float=Decimal)
    return doc["data"] if isinstance(doc, dict) else doc


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents, st.lists(st.integers(1, 40), min_size=1, max_size=5), st.sampled_from([None, 1, 2]),
       st.booleans())
def test_every_document_reads_as_the_standard_library_reads_it(doc, sizes, indent, ascii_only):
    text = json.dumps(doc, indent=indent, ensure_ascii=ascii_only)
    got = [item for _, item in iter_items(_chunks(text, sizes))]
    assert got == _reference(text)


@settings(max_examples=100, deadline=None)
@given(documents, st.data())
def test_a_truncated_document_is_an_error_never_fewer_items(doc, data):
    text = json.dumps(doc)
    cut = data.draw(st.integers(0, len(text) - 1))
    prefix = text[:cut]
    try:
        json.loads(prefix)
    except ValueError:
        pass
    else:
        return  # the prefix is a whole document itself ("[1, 2]" of "[1, 2]  ")
    with pytest.raises(JSONStreamError):
        list(iter_items(_chunks(prefix, [7])))


@settings(max_examples=150, deadline=None)
@given(documents, st.data())
def test_damaged_documents_are_refused_or_read_exactly(doc, data):
    text = json.dumps(doc)
    at = data.draw(st.integers(0, len(text)))
    junk = data.draw(st.text(alphabet='[]{},:"\\0123456789eE.-+ truefalsnNaIfiy', min_size=1, max_size=4))
    damaged = text[:at] + junk + text[at + data.draw(st.integers(0, 3)):]
    try:
        got = [item for _, item in iter_items(_chunks(damaged, [5, 11]))]
    except JSONStreamError:
        return  # refused (the standard library may accept NaN or a huge number we refuse)
    assert got == _reference(damaged)


def test_an_item_longer_than_the_limit_is_refused_without_reading_on():
    from spendlog.db.jsonstream import MAX_VALUE_CHARS

    served = []

    def chunks():
        yield '{"data": [{"model": "'
        while True:  # a string that never ends: the reader must stop, not read forever
            served.append(1)
            yield "x" * 65536

    with pytest.raises(JSONStreamError, match=r"data\[0\] .*longer than 1,048,576 characters"):
        list(iter_items(chunks()))
    assert len(served) * 65536 <= MAX_VALUE_CHARS + 2 * 65536


MEASURE = r"""
import resource, sys
from spendlog.db.activity import read_activity
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open(sys.argv[1] if len(sys.argv) > 1 else {path!r}, "rb") as fh:
    activity = read_activity(fh, name="big")
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
total = sum(f.requests for f in activity.sums.values())
usage = sum(f.usage for f in activity.sums.values())
print(len(activity.sums), total, usage, (after - before) // 1024)
"""


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_a_50_mb_activity_file_is_read_in_bounded_memory(tmp_path, fmt):
    path = tmp_path / f"big.{fmt}"
    models = [f"provider-{m}/model-{m}-with-a-long-name" for m in range(20)]
    rows = 0
    with open(path, "w") as fh:
        fh.write('{"data":[' if fmt == "json" else
                 "date,model,model_permaslug,endpoint_id,provider_name,usage,byok_usage_inference,requests,"
                 "prompt_tokens,completion_tokens,reasoning_tokens\n")
        while fh.tell() < 50 * 1024 * 1024:
            lines = []
            for i in range(1000):
                day, model = f"2025-06-{(rows + i) % 30 + 1:02d}", models[(rows + i) // 30 % 20]
                if fmt == "json":
                    lines.append(('' if rows + i == 0 else ',')
                                 + f'{{"date":"{day}","model":"{model}","model_permaslug":"{model}-2025-01-01",'
                                 f'"endpoint_id":"7a1c3e2f-0000-4000-8000-{rows + i:012d}","provider_name":"Provider",'
                                 f'"usage":0.000001,"byok_usage_inference":0,"requests":1,"prompt_tokens":1200,'
                                 f'"completion_tokens":345,"reasoning_tokens":0}}')
                else:
                    lines.append(f"{day},{model},{model}-2025-01-01,7a1c3e2f-0000-4000-8000-{rows + i:012d},"
                                 "Provider,0.000001,0,1,1200,345,0\n")
            fh.write("".join(lines))
            rows += 1000
        if fmt == "json":
            fh.write("]}")
    assert path.stat().st_size >= 50 * 1024 * 1024
    result = run_python(MEASURE.format(path=str(path)), timeout=300)
    assert result.returncode == 0, result.stderr
    keys, total, usage, growth_mb = result.stdout.split()
    assert (int(keys), int(total), Decimal(usage)) == (600, rows, Decimal(rows) / 1_000_000)
    # json.load of such a file raises the peak by over 100 MB; the stream keeps a chunk and the sums
    assert int(growth_mb) < 25, f"peak RSS grew {growth_mb} MB reading a 50 MB {fmt} file"
