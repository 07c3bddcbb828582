"""Services: the only writers of requests and grants, split by noun.

Each public function runs in one transaction, checks permissions and
transitions, and records one audit event per object it changes.
``submissions`` checks input, ``requests`` moves requests, ``lifecycle`` is the
one writer of a grant's status (issue, activate, expire, revoke, shorten,
supersede), ``grants`` checks what a person asks of a grant and calls it, and
``batches`` runs the jobs over many grants.
"""
