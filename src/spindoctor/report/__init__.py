"""The study report: one self-contained HTML file, summary.md and the tables as CSV."""
