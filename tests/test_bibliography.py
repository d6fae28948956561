"""One bibliography for the course (book/references.bib), and every chapter's reading list cites into it.

Each chapter ends with a "## Further reading" cell that cites the Flow Matching Guide and Code [Lipman2024];
every key ([Lipman2023]) and arXiv id cited in the chapters, the README and the book's pages names exactly one
entry; no two entries share an arXiv id; every entry is cited somewhere; the book's references page is the
one generated from the file.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import bibliography  # noqa: E402  (book/_ext is not a package)

CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.py"))
# Where the course cites: the chapters, the README, the book's own pages (the generated references page aside).
CITING = CHAPTERS + [ROOT / "README.md"] + sorted(p for p in (ROOT / "book").glob("*.md") if p.name != "references.md")
KEY = re.compile(r"\[([A-Z][A-Za-z]+(?:19|20)\d\d[a-z]?)\]")
ARXIV = re.compile(r"(?:arXiv[:\s]+|arxiv\.org/abs/)(\d{4}\.\d{4,5})", re.IGNORECASE)
GUIDE = "Lipman2024"


@pytest.fixture(scope="module")
def entries():
    return bibliography.read_bib()


def citations(path: Path) -> list[tuple[int, list[str], list[str]]]:
    """(line number, keys, arXiv ids) for each line of path that cites something."""
    found = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        keys, ids = KEY.findall(line), ARXIV.findall(line)
        if keys or ids:
            found.append((n, keys, ids))
    return found


def test_the_bibliography_reads(entries):
    assert len(entries) >= 20, len(entries)
    assert GUIDE in {e["key"] for e in entries}
    for e in entries:
        assert "eprint" in e or "doi" in e, f"{e['key']}: give an arXiv id (eprint) or a DOI"
        if "eprint" in e:
            assert re.fullmatch(r"\d{4}\.\d{4,5}", e["eprint"]), f"{e['key']}: eprint {e['eprint']!r} is no arXiv id"


def test_no_two_entries_share_an_arxiv_id(entries):
    twice = {i: n for i, n in Counter(e["eprint"] for e in entries if "eprint" in e).items() if n > 1}
    assert not twice, f"arXiv ids in more than one entry: {twice}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_each_chapter_ends_with_further_reading_citing_the_guide(chapter):
    last = chapter.read_text().rstrip().split("\n# %%")[-1]
    assert last.startswith(" [markdown]\n# ## Further reading"), (
        f"{chapter.name}: the last cell must be a markdown cell headed '## Further reading'")
    assert f"[{GUIDE}]" in last, f"{chapter.name}: Further reading must cite the Guide [{GUIDE}]"
    assert len(KEY.findall(last)) == len(set(KEY.findall(last))), f"{chapter.name}: a key is listed twice"


@pytest.mark.parametrize("path", CITING, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_citation_resolves_to_one_entry(path, entries):
    by_key = {e["key"]: e for e in entries}
    by_id = {e["eprint"]: e for e in entries if "eprint" in e}
    problems = []
    for n, keys, ids in citations(path):
        problems += [f"line {n}: [{k}] is not in book/references.bib" for k in keys if k not in by_key]
        problems += [f"line {n}: arXiv {i} is in no entry of book/references.bib" for i in ids if i not in by_id]
        if len(keys) == 1 and len(ids) == 1 and keys[0] in by_key and by_key[keys[0]].get("eprint") != ids[0]:
            problems.append(f"line {n}: [{keys[0]}] is arXiv {by_key[keys[0]].get('eprint')}, not {ids[0]}")
    assert not problems, f"{path.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_every_entry_is_cited(entries):
    cited = {k for p in CITING for _, keys, _ in citations(p) for k in keys}
    cited |= {e["key"] for e in entries if any(e.get("eprint") in ids for p in CITING for _, _, ids in citations(p))}
    unused = sorted({e["key"] for e in entries} - cited)
    assert not unused, f"entries no chapter, README or book page cites (cite them or drop them): {unused}"


def test_the_references_page_is_generated_from_the_file(entries):
    page = (ROOT / "book" / "references.md").read_text()
    assert page == bibliography.render(entries), "book/references.md is stale: run python book/_ext/bibliography.py"
    assert "references" in (ROOT / "book" / "index.md").read_text().split("```{toctree}")[-1], (
        "the references page must be in the book's contents")


def test_a_malformed_bibliography_gets_a_clear_error(tmp_path):
    twice = tmp_path / "twice.bib"
    twice.write_text("@misc{A2020,\n  author = {A}, title = {T}, year = {2020}\n}\n"
                     "@misc{A2020,\n  author = {B}, title = {U}, year = {2021}\n}\n")
    with pytest.raises(ValueError, match="A2020 appears twice"):
        bibliography.read_bib(twice)
    untitled = tmp_path / "untitled.bib"
    untitled.write_text("@misc{B2020,\n  author = {A}, year = {2020}\n}\n")
    with pytest.raises(ValueError, match="B2020 has no title"):
        bibliography.read_bib(untitled)
    unreadable = tmp_path / "unreadable.bib"
    unreadable.write_text("@misc{C2020, author = {A}, title = {T}, year = {2020}}\n")
    with pytest.raises(ValueError, match="could be read"):
        bibliography.read_bib(unreadable)


def test_the_project_says_how_to_cite_and_license_it(entries):
    """LICENSE is the MIT text pyproject declares; CITATION.cff is CFF 1.2.0 and cites the Guide by its arXiv id."""
    yaml = pytest.importorskip("yaml")
    assert 'license = "MIT"' in (ROOT / "pyproject.toml").read_text()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n\nCopyright (c) 2026 the fmlearn authors")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT"
    assert {"authors", "message", "title"} <= set(cff), sorted(cff)
    guide = {e["key"]: e for e in entries}[GUIDE]["eprint"]
    assert [r for r in cff.get("references", []) if any(guide in str(i["value"]) for i in r.get("identifiers", []))]
