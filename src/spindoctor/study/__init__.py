"""The study: one command from base model to an HTML report of every finding."""
