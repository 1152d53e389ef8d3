"""What a run leaves for others: the export (safetensors + config.json + model card), the `ul export`
bundle with its provenance, and the latent cache. Imports ul.core, ul.common and ul.storage's
address parsing; never ul.train's loop, ul.eval or the app layer."""
