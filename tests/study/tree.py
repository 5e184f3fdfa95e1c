"""Small helpers of the run-folder tests: lay out files, list a folder tree."""

from pathlib import Path


def write_tree(root: Path, files: dict[str, str]) -> None:
    """Write each ``relative path: text`` under ``root``, making folders as needed."""
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def tree(root: Path) -> list[str]:
    """Every path under ``root``, relative and sorted (to check that nothing changed)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
