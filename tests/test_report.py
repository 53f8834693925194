"""The report writer: the same blocks as markdown and as one self-contained HTML page."""

from __future__ import annotations

import base64
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from sigscan._report import Report, markdown_table


def test_report_markdown_and_html_carry_the_same_content(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    frame = pd.DataFrame({"method": ["attribution", "mean"], "f1": [0.91234, 0.5]})
    report = Report("A <title>").heading("Part `one`").text("Some **bold** text.").table(frame)
    report.figure(fig, "line.png", "A line").bullets(["first", "second"])
    plt.close(fig)
    page = report.write(tmp_path / "out")

    markdown = (tmp_path / "out" / "report.md").read_text()
    assert markdown.startswith("# A <title>\n")
    assert "| attribution | 0.912 |" in markdown
    assert "![A line](line.png)" in markdown and "- second" in markdown
    png = (tmp_path / "out" / "line.png").read_bytes()
    assert png.startswith(b"\x89PNG")

    html = page.read_text()
    assert "<title>A &lt;title&gt;</title>" in html  # escaped
    assert "<h2>Part <code>one</code></h2>" in html and "<b>bold</b>" in html
    assert "<td>0.912</td>" in html and "<li>second</li>" in html
    inline = re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1)
    assert base64.b64decode(inline) == png  # the same figure, inline
    assert not list((tmp_path / "out").glob("*.tmp"))  # nothing left aside


def test_markdown_table_formats_floats():
    table = markdown_table(pd.DataFrame({"a": ["x"], "b": [1.23456], "c": [3]}))
    assert table.splitlines() == ["| a | b | c |", "|---|---|---|", "| x | 1.235 | 3 |"]
