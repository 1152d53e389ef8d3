"""decode: the fetched files into uint8 array shards (ul.data.decode.images is the stage's body; DALI,
Pillow and PyAV back ends; ul.data.decode.imagecheck is the one image policy)."""
