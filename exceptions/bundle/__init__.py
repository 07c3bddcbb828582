"""Policy bundles: a pure compiler (records in, bytes out), per-engine emitters,
the decision logic the portal shares with the Rego policy, and the git publisher."""
