"""Who may connect and what they may do: SASL credentials, ACLs and quotas (sans-IO, no trio)."""
