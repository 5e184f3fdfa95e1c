"""Loading Hugging Face checkpoints safely (safetensors only) and importing other formats."""
