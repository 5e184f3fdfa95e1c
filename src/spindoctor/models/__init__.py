"""Models: safe loading (``load``), generation and teacher-forced loss (``generate``), the
checkpoint layout of a run folder (``checkpoints``), the model organism, GGUF import."""
