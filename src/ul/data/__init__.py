"""The data layer: fetch a source into tar shards of its encoded files and a manifest (ul.data.fetch,
ul.data.rawshards, ul.data.manifest), decode them into uint8 shards (ul.data.pixels.images), validate both
(ul.data.validate.gate). ul.data.layout holds the names all three share.

The submodules are imported lazily by their users (DALI and Great Expectations are slow to import).
Imports ul.common and ul.storage only; never the model.
"""
