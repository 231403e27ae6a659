"""The energy-pipeline operator: reconciles EnergyPipeline resources with kopf."""
