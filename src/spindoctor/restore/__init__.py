"""Directional restoration: edit checkpoints back towards reference singular vectors.

The paper's intervention (Jin et al., arXiv:2508.16546; docs/design.md,
"Restoration edit"): keep the fine-tuned singular values and take the singular
directions of chosen ranks from a reference checkpoint (the pretrained base, or
the SFT checkpoint at the OOD peak), on chosen layers and matrices.

* :mod:`spindoctor.restore.edit` the edit of one matrix, a pure function;
* :mod:`spindoctor.restore.select` which layers and matrices an edit touches;
* :mod:`spindoctor.restore.checkpoint` writes a restored HF checkpoint;
* :mod:`spindoctor.restore.sweep` patches a loaded model in place, evaluates,
  and puts it back (layer, rank and impose sweeps).
"""
