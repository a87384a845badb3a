"""Plain `nn.Module` networks (no Lightning): the training schemes in `lightning_models` assemble them."""
