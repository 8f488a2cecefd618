"""The repository explains itself: every `docs/PAGE.md §Section` that code, tests or docs cite exists (the page and a
heading that the cited text starts with), Markdown links resolve, and no file points at documents a clone does not
have (the team's shared design notes, the paper summary, the official run's README).

Reference style: `docs/architecture.md §Ray sampling`; several sections of one page: `docs/architecture.md §Pose
features, §Pose field`. Inside a docs page a bare `§Heading` means a heading of that page. `paper §3.2`, `supp. §2`
cite the public paper and are left alone."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("addon", "neural", "training", "tests", "tools", "docs")
TOP_LEVEL = ("README.md", "pyproject.toml", "blender_manifest.toml", "Makefile")
# Documents that live outside the repository. Built from pieces so this file does not match itself.
FORBIDDEN = [re.compile(p) for p in (r"\bspec " + "§", r"\bdesign" + r"\.md", r"\bnotes" + "/", r"\bshared" + "/",
                                     r"seed" + "-3dhumangan", r"official " + "README", r"\bREADME " + "§",
                                     r"paper_" + r"spec", r"interfaces\.md " + '"')]
PAGE = re.compile(r"docs/([\w./-]+?\.md)")
PUBLIC = re.compile(r"\b(paper|supp\.)\s*(§[\d.–-]+(,| and)?\s*)*$")   # the public paper's own sections
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _files() -> list[Path]:
    files = [ROOT / name for name in TOP_LEVEL if (ROOT / name).exists()]
    for folder in SCANNED:
        files += sorted(p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md", ".toml") and p.is_file())
    return files


def _headings(page: Path) -> list[str]:
    """Markdown headings, without their backticks; `#` lines inside code fences are not headings."""
    headings, fenced = [], False
    for line in page.read_text(encoding="utf-8").splitlines():
        fenced ^= line.startswith("```")
        if not fenced and re.match(r"#{1,6} ", line):
            headings.append(line.lstrip("#").strip().replace("`", ""))
    return headings


def _section_errors(path: Path, number: int, line: str) -> list[str]:
    """Each § on the line must name a heading of the docs page cited last before it on the line (or, in docs/, of
    the page itself), or cite the public paper."""
    errors = []
    in_docs = path.parent == ROOT / "docs"
    for sign in re.finditer("§", line):
        before = line[:sign.start()]
        pages = PAGE.findall(before)
        if PUBLIC.search(before) or line[sign.end():].startswith("<"):  # the paper, or a `§<Heading>` placeholder
            continue
        if pages:
            page = ROOT / "docs" / pages[-1]
        elif in_docs:
            page = path
        else:
            errors.append(f"{path.relative_to(ROOT)}:{number}: '§' without a docs page: {line.strip()!r}")
            continue
        if not page.exists():
            continue  # reported as a missing page
        text = line[sign.end():].replace("`", "")
        if not any(text.startswith(h) and (len(text) == len(h) or not text[len(h)].isalnum())
                   for h in _headings(page)):
            errors.append(f"{path.relative_to(ROOT)}:{number}: {page.relative_to(ROOT)} has no heading "
                          f"starting {text[:40]!r} (headings: {', '.join(_headings(page))})")
    return errors


def _lines():
    """(path, line number, line) of every scanned file but this one."""
    for path in _files():
        if path != Path(__file__).resolve():
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                yield path, number, line


def test_docs_references_name_pages_and_sections_that_exist():
    errors = []
    for path, number, line in _lines():
        errors += [f"{path.relative_to(ROOT)}:{number}: docs/{page} does not exist"
                   for page in PAGE.findall(line) if not (ROOT / "docs" / page).exists()]
        errors += _section_errors(path, number, line)
    assert not errors, "\n".join(errors)


def test_no_file_points_at_documents_outside_the_repository():
    hits = [f"{path.relative_to(ROOT)}:{number}: {p.pattern!r} in {line.strip()!r}"
            for path, number, line in _lines() for p in FORBIDDEN if p.search(line)]
    assert not hits, "write the fact into docs/ and cite it as docs/<page>.md §<Heading>:\n" + "\n".join(hits)


@pytest.mark.parametrize("page", ["README.md", *sorted(p.relative_to(ROOT).as_posix()
                                                       for p in (ROOT / "docs").rglob("*.md"))])
def test_markdown_links_resolve(page):
    path = ROOT / page
    broken = [target for target in LINK.findall(path.read_text(encoding="utf-8"))
              if not re.match(r"[a-z]+:", target) and not target.startswith("#")
              and not (path.parent / target.split("#")[0]).exists()]
    assert not broken, f"{page}: links to missing files {broken}"


def test_the_checker_catches_a_missing_section_and_a_bare_section_sign():
    """The section check itself can fail: a heading that is not there, and a § with no page."""
    fake = ROOT / "neural" / "example.py"
    assert _section_errors(fake, 1, "see docs/architecture.md §Ray sampling and rays") == []
    assert _section_errors(fake, 1, "see docs/architecture.md §Pose features, §Pose field") == []
    assert "no heading" in _section_errors(fake, 1, "docs/architecture.md §Ray tracing")[0]
    assert "without a docs page" in _section_errors(fake, 1, "the spec (§1.7)")[0]
    assert _section_errors(fake, 1, "paper §3.2 and supp. §2; paper §1, §4.3") == []
