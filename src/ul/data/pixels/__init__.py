"""decode: the fetched files into uint8 array shards (ul.data.pixels.images is the stage's body; DALI,
Pillow and PyAV back ends; ul.data.pixels.imagecheck is the one image policy)."""
