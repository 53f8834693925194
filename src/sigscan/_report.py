"""Reports: one list of blocks rendered as markdown (with figure files) and as one self-contained HTML page.

The demo, `ss.tl` analyses and the CLI write their reports through :class:`Report`, so every report has the same
look, the HTML opens offline (figures inline as base64 PNG) and both files are written aside and renamed into place.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._utils import written_aside

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1,h2,h3{line-height:1.2}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
img{max-width:100%}
figure{margin:1em 0}
figcaption{color:#555;font-size:.9em}
code{background:#f3f3f3;padding:0 .2em}
"""


@dataclass
class Report:
    """An ordered list of headings, paragraphs, tables and figures."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> Report:
        self.blocks.append((f"h{level}", text))
        return self

    def text(self, text: str) -> Report:
        self.blocks.append(("p", text))
        return self

    def bullets(self, items: list[str]) -> Report:
        self.blocks.append(("ul", list(items)))
        return self

    def table(self, frame: pd.DataFrame, *, index: bool = False) -> Report:
        self.blocks.append(("table", frame.reset_index() if index else frame))
        return self

    def figure(self, fig: Any, name: str, caption: str) -> Report:
        """Add a matplotlib figure; it is saved as ``name`` (a ``.png`` file name) beside the markdown."""
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        self.blocks.append(("img", (name, buffer.getvalue(), caption)))
        return self

    def image(self, path: str | Path, caption: str) -> Report:
        """Add a PNG file that is already written beside the report."""
        path = Path(path)
        self.blocks.append(("img", (path.name, path.read_bytes(), caption)))
        return self

    def markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        for kind, value in self.blocks:
            if kind.startswith("h"):
                lines += ["#" * int(kind[1:]) + " " + value, ""]
            elif kind == "p":
                lines += [value, ""]
            elif kind == "ul":
                lines += [f"- {item}" for item in value] + [""]
            elif kind == "table":
                lines += [markdown_table(value), ""]
            else:
                name, _, caption = value
                lines += [f"![{caption}]({name})", ""]
        return "\n".join(lines)

    def html(self) -> str:
        parts = [f"<h1>{_inline(self.title)}</h1>"]
        for kind, value in self.blocks:
            if kind.startswith("h"):
                parts.append(f"<{kind}>{_inline(value)}</{kind}>")
            elif kind == "p":
                parts.append(f"<p>{_inline(value)}</p>")
            elif kind == "ul":
                parts.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in value) + "</ul>")
            elif kind == "table":
                parts.append(_html_table(value))
            else:
                _, png, caption = value
                data = base64.b64encode(png).decode("ascii")
                parts.append(
                    f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{_inline(caption)}</figcaption></figure>"
                )
        body = "\n".join(parts)
        return (
            f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}</title>'
            f"<style>{_STYLE}</style></head><body>\n{body}\n</body></html>\n"
        )

    def write(self, out: str | Path, stem: str = "report") -> Path:
        """Write ``{stem}.md`` with its PNG files and the self-contained ``{stem}.html`` into ``out``.

        Every file is written aside and renamed into place. Returns the path of the HTML page.
        """
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for kind, value in self.blocks:
            if kind == "img":
                name, png, _ = value
                _write_atomic(out / name, png)
        _write_atomic(out / f"{stem}.md", self.markdown().encode())
        _write_atomic(out / f"{stem}.html", self.html().encode())
        return out / f"{stem}.html"


def markdown_table(frame: pd.DataFrame) -> str:
    """A pipe table (no optional dependency); floats with three decimals."""
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _cell(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float | np.floating) else str(value)


def _html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _inline(text: str) -> str:
    """Escape text and render markdown's inline code spans and bold."""
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", escaped)


def _write_atomic(path: Path, data: bytes) -> None:
    with written_aside(path) as tmp:
        tmp.write_bytes(data)
