"""The recovery arena: every cheap fix for OOD lost after SFT, scored on the same probes.

See docs/design.md, "Arena". :mod:`spindoctor.arena.methods` holds the pure
weight-space methods; :func:`spindoctor.arena.run.run_arena` scores them.
"""

from spindoctor.arena.methods import dg_threshold, interpolate, keep_top_r, soup, wise_ft

__all__ = ["dg_threshold", "interpolate", "keep_top_r", "soup", "wise_ft"]
