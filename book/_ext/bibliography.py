"""The course's bibliography (book/references.bib): a tiny reader for its BibTeX, and the book page made from it.

The file is plain BibTeX (one ``@type{Key, field = {value}, ...}`` entry per paper, values in braces, no
nested braces, no string macros), so a few regular expressions read it without a BibTeX package.
``python book/_ext/bibliography.py`` rewrites book/references.md; tests/test_bibliography.py checks that the
page is up to date and that every citation in the chapters, the README and the book resolves.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIB = ROOT / "book" / "references.bib"
PAGE = ROOT / "book" / "references.md"

ENTRY = re.compile(r"^@(\w+)\s*\{\s*([A-Za-z][\w-]*)\s*,(.*?)^\}", re.M | re.S)
FIELD = re.compile(r"(\w+)\s*=\s*\{([^{}]*)\}")


def read_bib(path: Path = BIB) -> list[dict[str, str]]:
    """The entries in file order, each a dict of its fields plus ``type`` and ``key``.

    Raises ValueError naming the entry when a key appears twice or an entry has no title, year and author."""
    text = path.read_text()
    entries, seen = [], set()
    for kind, key, body in ENTRY.findall(text):
        if key in seen:
            raise ValueError(f"{path.name}: key {key} appears twice")
        seen.add(key)
        fields = {name.lower(): " ".join(value.split()) for name, value in FIELD.findall(body)}
        missing = [f for f in ("author", "title", "year") if f not in fields]
        if missing:
            raise ValueError(f"{path.name}: entry {key} has no {', '.join(missing)}")
        entries.append({"type": kind.lower(), "key": key, **fields})
    if text.count("\n@") + text.startswith("@") != len(entries):
        raise ValueError(f"{path.name}: {text.count(chr(10) + '@')} entries begin, {len(entries)} could be read")
    return entries


def _authors(field: str) -> str:
    """'A', 'A and B', 'A, B and C', or 'A et al.' for more than three authors."""
    names = [n.strip() for n in field.split(" and ")]
    if len(names) > 3:
        return names[0] + " et al."
    return " and ".join(filter(None, (", ".join(names[:-1]), names[-1])))


def render(entries: list[dict[str, str]]) -> str:
    """The Markdown page listing every entry, sorted by key, each under the key the chapters cite it by, with its arXiv or DOI link."""
    lines = [
        "# References",
        "",
        "The papers the course follows, one entry each, from `book/references.bib` (this page is generated from it",
        "by `python book/_ext/bibliography.py`). Each chapter ends with a **Further reading** section that cites",
        "these entries by key, as in [Lipman2024], and says what to read each one for.",
        "",
    ]
    for e in sorted(entries, key=lambda e: e["key"].lower()):
        venue = e.get("booktitle") or e.get("journal") or ""
        where = f"arXiv [{e['eprint']}](https://arxiv.org/abs/{e['eprint']})" if "eprint" in e else (
            f"doi [{e['doi']}](https://doi.org/{e['doi']})" if "doi" in e else "")
        extra = ", ".join(p for p in (venue, e["year"], where) if p)
        authors = _authors(e["author"]).rstrip(".")
        lines.append(f"- **[{e['key']}]** {authors}. *{e['title']}*. {extra}.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    PAGE.write_text(render(read_bib()))
    sys.stdout.write(f"wrote {PAGE.relative_to(ROOT)}\n")
