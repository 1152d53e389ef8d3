"""fetch: a source (the built-in data, a folder, an archive, a URL, an S3 or lakeFS prefix) into tar
shards of its encoded files and a manifest (ul.data.fetch.sources is the stage's body)."""
