"""Services: the only writers of requests and grants, split by noun.

Each public function runs in one transaction, checks permissions and
transitions, and records one audit event per object it changes.
``submissions`` checks input, ``requests`` moves requests, ``grants`` issues
and revokes grants, ``batches`` runs the jobs over many grants.
"""
