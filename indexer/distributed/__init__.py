"""Beyond one machine: Ray for encoding, sharded corpora for search (docs/scale-out.md).

Ray is optional (``pip install memex[ray]``) and imported only when a Ray address is
configured (``MEMEX_RAY_ADDRESS`` or ``memex index --ray``): ``cluster.py`` connects,
``encode_pool.py`` runs a sync's encode stage on actors, ``sharded.py`` splits a corpus's
index by document and ``shard_actors.py`` serves its shards from actors.
"""
