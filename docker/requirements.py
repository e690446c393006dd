"""Print tunebatch's dependencies from pyproject.toml as a requirements file, minus some.

The images install the dependencies in one cached layer and the project itself with
``pip install --no-deps .`` in a second, small one, so a code change does not reinstall
TensorFlow. Some images need a different set than ``pip install .`` would give:

* the producer image leaves out TensorFlow, Keras and music21: it only enqueues jobs, reads
  records and fetches files (see docker/producer.Dockerfile);
* the GPU image swaps ``tensorflow`` for the ``gpu`` extra's ``tensorflow[and-cuda]`` (the same
  wheel plus the CUDA libraries), so the requirements file names it once.

Reading the list from pyproject.toml (instead of repeating it in each Dockerfile) keeps the
pins in one place. Runs on the image's Python alone (``tomllib``, no third-party imports).

Usage: python requirements.py pyproject.toml [--without NAME]... [--extra NAME]...
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path

#: The distribution name at the start of a PEP 508 requirement string.
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    """PEP 503 normalised name: ``Tensorflow_CPU`` and ``tensorflow-cpu`` are one project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The canonical distribution name of a PEP 508 requirement string."""
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a PEP 508 requirement: {requirement!r}")
    return canonical(match.group(1))


def requirements(
    pyproject: dict[str, object], without: Iterable[str] = (), extras: Iterable[str] = ()
) -> list[str]:
    """The project's dependencies minus `without` (by name, any marker), then the `extras`.

    `without` applies to the main dependencies only, so an extra can bring back a project under
    another marker or with its own extras (``tensorflow[and-cuda]`` in place of
    ``tensorflow``).
    """
    project = pyproject.get("project")
    if not isinstance(project, dict):
        raise ValueError("pyproject.toml has no [project] table")
    dependencies = [str(req) for req in project.get("dependencies", [])]
    optional = project.get("optional-dependencies", {})
    dropped = {canonical(name) for name in without}
    unknown = dropped - {requirement_name(req) for req in dependencies}
    if unknown:
        # A name that matches nothing is a typo or a dependency that was renamed: say so rather
        # than silently install what the image meant to leave out.
        raise ValueError(f"--without names no dependency: {', '.join(sorted(unknown))}")
    kept = [req for req in dependencies if requirement_name(req) not in dropped]
    for extra in extras:
        if not isinstance(optional, dict) or extra not in optional:
            raise ValueError(f"pyproject.toml has no optional dependency group {extra!r}")
        kept.extend(str(req) for req in optional[extra])
    return kept


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", type=Path, help="path to pyproject.toml")
    parser.add_argument(
        "--without", action="append", default=[], metavar="NAME", help="leave out (repeatable)"
    )
    parser.add_argument(
        "--extra", action="append", default=[], metavar="NAME", help="add an extra (repeatable)"
    )
    args = parser.parse_args(argv)
    with args.pyproject.open("rb") as f:
        data = tomllib.load(f)
    try:
        lines = requirements(data, args.without, args.extra)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
