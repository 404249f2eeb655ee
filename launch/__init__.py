"""Entry points: ``python -m launch.{train,sample,convert,eval,aot_compile,ablate}``."""
