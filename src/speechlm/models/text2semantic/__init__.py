"""Text-to-semantic (dual-AR LLaMA) networks, their loader and LightningModule."""
