"""The base layer: the configuration schema and its composition, atomic writes, error types, array
shards and pixel conversions. It imports nothing else of `ul`; every other layer may import it."""
