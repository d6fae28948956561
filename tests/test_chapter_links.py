"""Every link and file reference in a chapter resolves, and every chapter links its exercise notebook.

A chapter is read in JupyterLab from chapters/, so a markdown link target must resolve relative to
that folder (``../exercises/ex02_probability_paths.ipynb``). A path merely named in the text
(``exercises/ex06_conditional_generation.ipynb``, ``benchmarks/time_to_quality.py``) may be written
from the repository root or from chapters/; either way the file must exist.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
EXERCISES = ROOT / "exercises"
CHAPTER_SOURCES = sorted(CHAPTERS.glob("[0-9][0-9]_*.py"))

# [text](target) and ![alt](target), with an optional "title"; and reference definitions [label]: target
INLINE_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^[#\s]*\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
# a path into one of the course's folders, written from the root or from chapters/ (../)
PATH_MENTION = re.compile(r"(?<![\w/.])((?:\.\./)?(?:exercises|solutions|chapters|benchmarks|fmlearn|tests)"
                          r"/[\w.\-/]*[\w/])")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.\-]*:|//|#)", re.IGNORECASE)  # http:, mailto:, //host, #anchor


def link_targets(text: str) -> list[str]:
    """The targets of the markdown links in text (external URLs and pure anchors left out, #anchors cut)."""
    found = INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)
    return [t.split("#", 1)[0] for t in found if not EXTERNAL.match(t)]


def broken_references(text: str, base: Path = CHAPTERS, root: Path = ROOT) -> list[str]:
    """Every link target (relative to base) and every path mention (relative to root or base) that
    names no existing file or folder, as readable messages."""
    targets = link_targets(text)
    problems = [f"link ({t}) does not resolve from {base.name}/" for t in targets if not (base / t).exists()]
    for mention in PATH_MENTION.findall(text):
        if mention not in targets and not ((root / mention).exists() or (base / mention).exists()):
            problems.append(f"path {mention} does not exist")
    return problems


def exercise_link_problem(chapter: Path, text: str, exercises: Path = EXERCISES, base: Path = CHAPTERS) -> str | None:
    """None if the chapter links (a markdown link, not just a mention) its exercise notebook exNN_*.ipynb,
    or has none to link; else what is missing."""
    wanted = sorted(exercises.glob(f"ex{chapter.name[:2]}_*.ipynb"))
    if not wanted:
        return None
    linked = {(base / t).resolve() for t in link_targets(text)}
    if not any(w.resolve() in linked for w in wanted):
        rel = "../" + wanted[0].relative_to(exercises.parent).as_posix()
        return f"{chapter.name} does not link its exercise notebook: add a link to ({rel})"
    return None


def test_there_are_chapters_to_check():
    assert len(CHAPTER_SOURCES) >= 7, CHAPTER_SOURCES


@pytest.mark.parametrize("chapter", CHAPTER_SOURCES, ids=lambda p: p.name)
def test_every_link_and_path_resolves(chapter):
    problems = broken_references(chapter.read_text())
    assert not problems, f"{chapter.name}: " + "; ".join(problems)


@pytest.mark.parametrize("chapter", CHAPTER_SOURCES, ids=lambda p: p.name)
def test_chapter_links_its_exercise(chapter):
    problem = exercise_link_problem(chapter, chapter.read_text())
    assert problem is None, problem


def test_the_checks_catch_bad_references():
    """The checks above can fail: a made-up chapter with a bad link, a bad mention and no exercise link."""
    good = "# See [the exercises](../exercises/ex02_probability_paths.ipynb) and benchmarks/train_step.py."
    assert broken_references(good) == []
    assert exercise_link_problem(CHAPTERS / "02_probability_paths.py", good) is None

    bad_link = "# Exercises: [ex07](../exercises/ex07_diffusion.ipynb)."
    assert broken_references(bad_link) == ["link (../exercises/ex07_diffusion.ipynb) does not resolve from chapters/"]
    # a link written from the root does not resolve from chapters/, where the notebook is opened
    assert len(broken_references("[ex02](exercises/ex02_probability_paths.ipynb)")) == 1
    # a stale file name in plain text (the form chapter 7 used), with or without ../
    assert len(broken_references("# Exercises: `exercises/ex07_diffusion.ipynb`.")) == 1
    assert len(broken_references("# see ../solutions/ex99_missing.py")) == 1
    # a mention is not a link, and a link to another chapter's exercise does not count
    assert exercise_link_problem(CHAPTERS / "07_diffusion_special_case.py",
                                 "`exercises/ex07_diffusion_special_case.ipynb`") is not None
    assert exercise_link_problem(CHAPTERS / "03_sampling_ode_solvers.py", good) is not None
    # external links and anchors are not files
    assert broken_references("[torch](https://pytorch.org) [up](#summary) [x](mailto:a@b.c)") == []
