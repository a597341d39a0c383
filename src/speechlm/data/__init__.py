"""Datasets and Lightning data modules for fine-tuning (text2semantic, VITS, VQGAN/Firefly)."""
