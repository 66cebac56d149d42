"""gallery: one-shot face identification."""
