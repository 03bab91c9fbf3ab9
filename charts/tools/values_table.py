"""Writes the values table of a chart's README.md from its values.yaml comments.

A value is documented by a `# -- text` comment (helm-docs' convention), continued by
the `# ...` lines after it, directly above its key. The table goes between
`<!-- values:start -->` and `<!-- values:end -->` in README.md.

    python3 charts/tools/values_table.py charts/guardrail          # rewrite README.md
    python3 charts/tools/values_table.py --check charts/guardrail  # exit 1 if stale

Every key with a `# --` comment becomes a row (dotted path, default, description);
a mapping without one is a heading only. An undocumented leaf is an error: the chart
promises every value is documented.
"""

import json
import re
import sys
from pathlib import Path

import yaml

START, END = "<!-- values:start -->", "<!-- values:end -->"
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-]+):(?P<rest>.*)$")


def documented(text):
    """[(dotted path, description)] in file order."""
    rows, stack, pending = [], [], None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if pending is not None:
                pending.append(stripped[1:].strip())
            continue
        match = KEY.match(line)
        if not match or stripped.startswith("-"):
            pending = None if not stripped else pending
            continue
        depth = len(match["indent"]) // 2
        stack = stack[:depth] + [match["key"]]
        if pending is not None:
            rows.append((".".join(stack), " ".join(pending)))
        pending = None
    return rows


def leaves(values, prefix=""):
    """Dotted paths of every scalar, list or empty mapping in the values."""
    if isinstance(values, dict) and values:
        for key, value in values.items():
            yield from leaves(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1]


def lookup(values, path):
    for part in path.split("."):
        values = values[part]
    return values


def cell(text):
    # Markdown tables: escape the column separator; `<x>` would render as an HTML tag.
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def table(chart):
    text = (chart / "values.yaml").read_text()
    values = yaml.safe_load(text)
    rows = documented(text)
    paths = {path for path, _ in rows}
    missing = [
        leaf
        for leaf in leaves(values)
        if not any(leaf == p or leaf.startswith(p + ".") for p in paths)
    ]
    if missing:
        sys.exit(f"{chart}/values.yaml: undocumented values (add a `# --` comment): {missing}")
    lines = ["| Key | Default | Description |", "|---|---|---|"]
    for path, description in rows:
        default = json.dumps(lookup(values, path), separators=(", ", ": "))
        lines.append(f"| `{path}` | `{cell(default)}` | {cell(description)} |")
    return "\n".join(lines)


def main(argv):
    check = "--check" in argv
    chart = Path([a for a in argv if not a.startswith("--")][0])
    readme = chart / "README.md"
    current = readme.read_text()
    if START not in current or END not in current:
        sys.exit(f"{readme}: no {START} ... {END} markers")
    head, rest = current.split(START, 1)
    _, tail = rest.split(END, 1)
    wanted = f"{head}{START}\n{table(chart)}\n{END}{tail}"
    if check:
        if wanted != current:
            sys.exit(f"{readme} is stale: run python3 charts/tools/values_table.py {chart}")
        return
    readme.write_text(wanted)


if __name__ == "__main__":
    main(sys.argv[1:])
