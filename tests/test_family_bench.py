"""``python -m adamkern bench --family``: the streams each row reads and writes, the prices of
a read and a written stream taken from the two rooflines, and the two yardsticks against adam."""

from __future__ import annotations

import json
import math

import pytest
from adamkern import bench, registry
from adamkern.bench import FAMILY, family
from adamkern.bench.family import format_family_table, run_family, stream_prices

ROWS = {row[0]: row for row in FAMILY}


def test_rows_count_the_streams_of_every_pass():
    for name in registry.names():
        label, _, _, states, reads, writes = ROWS[name.replace("_", " ")]
        if name == "lamb":  # p, g, m, v; then p, m, v
            assert (reads, writes) == (7, 3)
        elif name == "prodigy":  # p, g, m, v, s, p0; then p, m, v
            assert (reads, writes) == (9, 4)
        else:  # one pass: p, g and each state read; p and each state written
            assert (reads, writes) == (2 + len(states), 1 + len(states)), label
    assert ROWS["adam"][4:] == (4, 3)
    assert ROWS["adamw cautious"][4:] == (6, 3)  # the count reads g and m first
    assert ROWS["lion cautious"][4:] == (5, 2)
    assert ROWS["adafactor"][4:] == (5, 1)  # p and g; g; p and g, writing p


def test_stream_prices():
    assert stream_prices(2.0, 11.0) == (2.0, 1.0)  # the copy: 4 reads and 3 writes
    assert stream_prices(2.0, 7.0) == (2.0, 0.0)  # writes that cost nothing beyond the reads


def test_yardsticks_against_adam():
    read, write, adam_factor = 2.0, 1.0, 1.25
    times = {"read roofline": read, "roofline": 4 * read + 3 * write}
    factors = {}
    for k, (label, *_, reads, writes) in enumerate(FAMILY):
        factors[label] = adam_factor if label == "adam" else 1.0 + k / 100
        times[label] = factors[label] * (reads * read + writes * write)
    results = {r.method: r for r in family._family_results(times, 1000, 1, "float32")}
    assert set(results) == set(ROWS)
    for label, r in results.items():
        reads, writes = ROWS[label][4:]
        assert (r.reads, r.writes, r.streams) == (reads, writes, reads + writes)
        assert r.of_roofline == pytest.approx(1 / factors[label])
        assert r.of_adam_priced == pytest.approx(factors[label] / adam_factor)
        assert r.of_adam == pytest.approx(times[label] / (times["adam"] * (reads + writes) / 7))
        assert r.gb_per_s == pytest.approx((reads + writes) * 4 * 1000 / times[label] / 1e9)
        assert (r.read_ns, r.write_ns) == pytest.approx((read / 1000 * 1e9, write / 1000 * 1e9))
    # a row reading more than it writes is charged more than adam per stream
    assert results["adamw cautious"].of_adam > results["adamw cautious"].of_adam_priced


def test_run_family_tiny():
    results = run_family(1 << 12, [1], budget_s=0.01, progress=False)
    assert [r.method for r in results] == [row[0] for row in FAMILY]
    for r in results:
        assert math.isfinite(r.of_adam_priced) and r.of_adam_priced > 0
        assert math.isfinite(r.of_roofline) and r.of_roofline > 0
    adam = next(r for r in results if r.method == "adam")
    assert adam.of_adam == pytest.approx(1.0) and adam.of_adam_priced == pytest.approx(1.0)
    table = format_family_table(results)
    assert "vs adam, priced" in table and "lion cautious" in table and "5+2" in table


def test_cli_family_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    out = tmp_path / "family.json"
    assert bench.main(["--family", "--sizes", "4096", "--threads", "1", "--budget", "0.05",
                       "--no-progress", "--json", str(out)]) == 0
    assert "vs adam, priced" in capsys.readouterr().out
    rows = json.loads(out.read_text())["family"]
    assert [r["method"] for r in rows] == [row[0] for row in FAMILY]
    for r in rows:
        assert r["streams"] == r["reads"] + r["writes"] and r["size"] == 4096
        assert r["of_adam_priced"] > 0 and r["read_ns"] > 0 and r["write_ns"] >= 0
