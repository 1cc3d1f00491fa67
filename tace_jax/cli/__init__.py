"""Command-line interface: ``tace-jax {train,eval,quickstart,md,vib}``."""
