"""Policy bundles: a pure compiler (records in, bytes out), the emitters of each
enforcement engine behind one interface (``emitters/``: a registry of OPA, Istio,
Cilium), the decision logic the portal shares with the Rego policy, and the
policy repository (git I/O). Nothing here imports Django (tests/bundle/test_purity.py);
the Django side lives in ``exceptions/services/publications.py``,
``exceptions/explain.py`` and ``exceptions/approval_preview.py``."""
