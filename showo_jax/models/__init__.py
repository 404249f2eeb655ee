"""Networks of showo_jax, one file each (see README's package map)."""
