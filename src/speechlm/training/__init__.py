"""Training helpers shared by every LightningModule: learning-rate schedules and progress callbacks."""
