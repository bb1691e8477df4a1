"""The user's documents as part of their memory: a semantic file system.

The user picks folders (`folders`); their PDFs, Word files, Markdown, plain text and source
code are read (`extract`: one extractor per kind), cut into passages that know their page or
line range (`chunking`), and stored as HiNATA records through the personal service, each with
the file and its page or lines as its `address`. The index (`indexer`) is incremental: a
manifest (`manifest`) remembers each file's size, mtime and content hash, so an unchanged file
is not read again, a changed one is re-indexed and a deleted one forgotten. A watcher
(`watcher`) keeps it in step while ByenatOS runs. `service.DocumentsService` is what the
kernel holds.

Nothing here is imported at start-up unless folders are configured.
"""
