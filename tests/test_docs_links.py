"""The README and docs/ point at things that exist: links, anchors, source paths, CLI options.

A newcomer follows these pages literally, so every relative link must open a file (and its
``#anchor`` a heading of that file), every ``common/…``, ``producer/…``, ``worker/…`` (and
``bench/``, ``tests/``, ``docker/``, ``k8s/``, ``scripts/``) path and every dotted module
(``common.jobs.fetch``) must exist in the repository,
every ``--option`` written after a ``producer``/``worker`` command must be an option of that
command, as its ``--help`` shows it, and every ``TUNEBATCH_*`` variable must be a setting (or a
knob the test suites read).
"""

from __future__ import annotations

import importlib
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from common.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]

#: ``[text](target)`` and ``![alt](target)``; the target ends at whitespace or ``)``.
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
#: A repository path: starts a word (not the tail of a longer path) in a top-level folder.
_TOP = "common|producer|worker|bench|tests|docker|k8s|scripts"
_PATH = re.compile(rf"(?<![\w/.~-])((?:{_TOP})/[\w./-]*\w)")
#: Paths a page names that a user creates (``cp docker/.env.example docker/.env``).
_CREATED_BY_USER = {"docker/.env"}
_FENCE = re.compile(r"^\s*```")
_INLINE_CODE = re.compile(r"`([^`]+)`")
_COMMAND = re.compile(r"(?<![\w/.-])(producer|worker)((?:\s+[a-z][a-z-]*)+)")
_OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
#: Where a shell command ends: the rest of the line is another command or a comment.
_COMMAND_END = re.compile(r"\s(?:#|\||;|&&)|(?<![\w/.-])(?:producer|worker)\s")


def _rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_fence = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (match := re.match(r"#{1,6}\s+(.*)", line)):
            slug = _slug(match.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _code_snippets(page: Path) -> Iterator[str]:
    """Every line of a fenced block and every inline code span of `page`.

    Inline spans are found per paragraph, since a wrapped span runs across lines.
    """
    in_fence = False
    paragraph: list[str] = []
    for line in [*page.read_text(encoding="utf-8").splitlines(), ""]:
        if _FENCE.match(line) or in_fence or not line.strip():
            yield from _INLINE_CODE.findall(" ".join(paragraph))
            paragraph = []
        if _FENCE.match(line):
            in_fence = not in_fence
        elif in_fence:
            yield line
        elif line.strip():
            paragraph.append(line.strip())


def test_readme_links_every_page() -> None:
    """A page the README does not link is a page a newcomer never finds."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = {target.partition("#")[0] for target in _LINK.findall(readme)}
    orphans = [_rel(page) for page in DOCS if _rel(page) not in linked]
    assert not orphans, f"README.md links none of {orphans}: add them to its Read more list"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in _LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z+.-]*:", target):  # http:, https:, mailto:, file:
            continue
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists():
            broken.append(f"{target}: no file {linked.relative_to(ROOT)}")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target}: {linked.relative_to(ROOT)} has no heading #{anchor}")
    assert not broken, f"{_rel(page)} has broken links:\n" + "\n".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_repository_paths_exist(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    missing = sorted(
        {
            path.rstrip(".")
            for path in _PATH.findall(text)
            if path.rstrip(".") not in _CREATED_BY_USER and not (ROOT / path.rstrip(".")).exists()
        }
    )
    assert not missing, f"{_rel(page)} names paths that do not exist: {missing}"


def _cli(script: str) -> object:
    """The command tree behind a console script of pyproject.toml (``module:function``)."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "scripts"
    ]
    module = importlib.import_module(scripts[script].partition(":")[0])
    app = module.app
    assert isinstance(app, typer.Typer)
    return typer.main.get_command(app)


def _subcommands(command: object) -> dict[str, object]:
    """A group's commands by name; empty for a command (Typer vendors click: duck-typed)."""
    commands = getattr(command, "commands", None)
    return commands if isinstance(commands, dict) else {}


def _options(command: object) -> set[str]:
    names = {"--help"}
    for param in getattr(command, "params", []):
        names.update(name for name in (*param.opts, *param.secondary_opts) if name.startswith("--"))
    return names


def _documented_commands(page: Path) -> Iterator[tuple[str, list[str], str]]:
    """(script, command words, the rest of the command) for each command a page writes out."""
    for snippet in _code_snippets(page):
        for match in _COMMAND.finditer(snippet):
            rest = snippet[match.end() :]
            end = _COMMAND_END.search(rest)
            yield match.group(1), match.group(2).split(), rest[: end.start()] if end else rest


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_documented_options_exist(page: Path) -> None:
    clis = {script: _cli(script) for script in ("producer", "worker")}
    wrong = []
    for script, words, rest in _documented_commands(page):
        command = clis[script]
        path = [script]
        for word in words:
            if word not in _subcommands(command):
                rest = " ".join(words[len(path) - 1 :]) + rest
                break
            command = _subcommands(command)[word]
            path.append(word)
        if len(path) == 1 or _subcommands(command):
            continue  # prose ("the producer image") or a group name alone
        for option in _OPTION.findall(rest):
            if option not in _options(command):
                wrong.append(f"{' '.join(path)} {option}")
    assert not wrong, f"{_rel(page)} documents options that do not exist: {sorted(set(wrong))}"


#: A variable a page names in full (``TUNEBATCH_S3_*`` names a group, not a variable).
_VARIABLE = re.compile(r"\bTUNEBATCH_([A-Z0-9_]*[A-Z0-9])\b(?!_?\*)")


def _used_outside_settings(name: str) -> bool:
    """Whether a test or the Makefile reads `name` (the suites' own knobs, not settings)."""
    files = [ROOT / "Makefile", *(ROOT / "tests").rglob("*.py")]
    return any(name in path.read_text(encoding="utf-8") for path in files)


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_documented_variables_exist(page: Path) -> None:
    unknown = sorted(
        f"TUNEBATCH_{name}"
        for name in set(_VARIABLE.findall(page.read_text(encoding="utf-8")))
        if name.lower() not in Settings.model_fields
        and not _used_outside_settings(f"TUNEBATCH_{name}")
    )
    assert not unknown, f"{_rel(page)} names variables no setting or test reads: {unknown}"


#: A dotted module path (``common.jobs.fetch``, ``worker.celery_app``), not part of a file path.
_MODULE = re.compile(r"(?<![\w./-])((?:common|producer|worker|tests|bench)(?:\.[A-Za-z_]\w*)+)")


def _module_exists(dotted: str) -> bool:
    """The longest prefix of `dotted` is a module or package; what follows names one of its
    top-level definitions (a function, class or assignment)."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:end])
        source = (
            base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        )
        if not source.is_file():
            continue
        if end == len(parts):
            return True
        name = re.escape(parts[end])
        pattern = rf"^(?:def|class|async def) {name}\b|^{name}\s*[:=]|^from \S+ import .*\b{name}\b"
        return re.search(pattern, source.read_text(encoding="utf-8"), re.MULTILINE) is not None
    return False


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_module_paths_exist(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    missing = sorted({name for name in _MODULE.findall(text) if not _module_exists(name)})
    assert not missing, f"{_rel(page)} names modules that do not exist: {missing}"
