"""Everything that reads or writes files: images in (files, folders, arrays, URIs), features
out (.npy/.npz/.csv/.parquet sinks and Parquet shards), the resumable shard store, atomic
writes and the one-writer lock."""
