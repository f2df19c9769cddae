"""The documentation stays true to the package: every link leads somewhere, and the command-line
reference names exactly the options each command takes."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from pixelrnn.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "checkpoints").glob("*/README.md"))]


def without_code(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings: lower case, punctuation but hyphens dropped,
    spaces as hyphens, a repeated one suffixed -1, -2, ..."""
    found, seen = set(), {}
    for heading in re.findall(r"^#{1,6}\s+(.*?)\s*$", without_code(page.read_text()), re.M):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_link_leads_to_a_file_and_heading_that_exist(page):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", without_code(page.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto:: not checked here (no network)
            continue
        path, _, anchor = target.partition("#")
        destination = page.parent / path if path else page
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no such heading")
    assert not broken, broken


def test_the_anchors_follow_githubs_rule(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Speed\n## On a GPU\n## Residual and skip connections (paper 3.3)\n"
                    "```\n# not a heading\n```\n## `--flag` and [a link](x.md)\n## Speed\n")
    assert anchors(page) == {"speed", "on-a-gpu", "residual-and-skip-connections-paper-33", "--flag-and-a-link",
                             "speed-1"}


def subcommands() -> dict[str, argparse.ArgumentParser]:
    (commands,) = [action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)]
    return dict(commands.choices)


def test_the_command_reference_names_each_commands_options_and_only_those():
    """docs/cli.md's table: each command's row gives only options the command takes, and every
    option of a command is named somewhere on the page."""
    text = (ROOT / "docs" / "cli.md").read_text()
    parsers = subcommands()
    rows = re.findall(r"^\| `pixelrnn ([\w-]+)([^`]*)` \|", text, re.M)
    assert {name for name, _ in rows} == set(parsers)
    for name, synopsis in rows:
        known = {flag for action in parsers[name]._actions for flag in action.option_strings}
        unknown = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", synopsis)) - known
        assert not unknown, f"pixelrnn {name}: {sorted(unknown)} in docs/cli.md but not in the command"
    undocumented = {f"{name} {flag}" for name, parser in parsers.items() for action in parser._actions
                    for flag in action.option_strings
                    if flag.startswith("--") and flag != "--help" and not re.search(rf"{flag}(?![\w-])", text)}
    assert not undocumented, sorted(undocumented)
