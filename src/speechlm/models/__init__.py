"""Networks (plain nn.Modules) and their LightningModules, one package per model area."""
