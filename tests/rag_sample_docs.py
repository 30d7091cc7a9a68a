"""Small documentation sets the RAG tests build themselves (no external data needed)."""

from __future__ import annotations

from pathlib import Path

_TOPICS = ("layer assignment", "congestion maps", "track usage", "via counts", "timing estimates", "pin access",
           "net ordering", "capacity adjustment", "report files", "debug output")


def prose(topic: str, n: int) -> str:
    """`n` varied sentences about `topic`, two per line, paragraphs of four (sections of realistic size)."""
    sentences = [f"The {topic} step {i} records {_TOPICS[i % len(_TOPICS)]} for each region of the design, "
                 f"and the report lists item {i * 7 % 13} with its cost." for i in range(n)]
    lines = [" ".join(sentences[i : i + 2]) for i in range(0, n, 2)]
    return "\n\n".join("\n".join(lines[i : i + 2]) for i in range(0, len(lines), 2))


def routing_guide() -> str:
    """A Markdown guide with several command sections; `Set Routing Alpha` answers the alpha question."""
    parts = ["# Global Routing", "", "The global router plans the wires of every net before detailed routing.", ""]
    for title, body in (
        ("Set Routing Layers", prose("layer range", 20)),
        ("Set Macro Extension", prose("macro extension", 18)),
        ("Set Routing Alpha", "Use `set_routing_alpha -net NAME ALPHA` to trade off total wirelength against the "
                              "path depth from a net's driver to its loads: a larger alpha shortens the longest "
                              "source-to-sink path at the cost of more wire. " + prose("alpha tuning", 6)),
        ("Set Global Routing Randomness", prose("random seed", 18)),
        ("Report Wire Length", prose("wire length", 20)),
    ):
        parts += [f"## {title}", "", body, "", "```tcl", f"# example for {title.lower()}", "```", ""]
    return "\n".join(parts)


def install_guide(cloud: str, offline_word: str = "disconnected") -> str:
    """One of several near-identical install guides (one per cloud)."""
    return "\n".join([
        f"# Installing on {cloud}", "",
        "## Prerequisites", "", prose(f"{cloud} account", 8), "",
        f"## {offline_word.capitalize()} installation", "",
        f"A {offline_word} install runs without internet access: copy the bundle to the {cloud} host, "
        f"run `./install.sh --offline`, then start the service with `svc start`. " + prose("bundle", 6), "",
    ])


def write_tree(root: Path, files: dict[str, str]) -> None:
    """`files` (relative path -> text) written under `root`, folders created."""
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def write_docs(folder: Path) -> Path:
    """The sample collection: a routing guide, Markdown in a `.txt` file, three near-copy install guides."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "global_routing.md").write_text(routing_guide())
    (folder / "master.txt").write_text(
        "# Release Process\n\n## Tagging\n\nCreate an annotated tag `vX.Y.Z` on the main branch. "
        + prose("tagging", 6) + "\n\n## Publishing\n\nUpload the wheel with `twine upload`. " + prose("upload", 6) + "\n")
    for cloud in ("AWS", "GCP", "Azure"):
        (folder / f"install_{cloud.lower()}.md").write_text(install_guide(cloud))
    return folder
