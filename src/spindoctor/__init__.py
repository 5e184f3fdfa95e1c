"""spindoctor: diagnose and repair OOD forgetting in SFT -> RL post-training.

The benchmark lives in :mod:`spindoctor.game`; it imports no torch, so the
game commands stay fast.
"""

__version__ = "0.1.0"
