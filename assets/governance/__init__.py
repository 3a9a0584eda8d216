"""The governance stage: who holds keys, and what every request did (the audit trail and its retention)."""

from assets.governance.audit import AuditConfig, api_keys_inventory, audit_trail, keys_rotated_recently

governance_assets = [audit_trail, api_keys_inventory]
governance_checks = [keys_rotated_recently]

__all__ = ["AuditConfig", "api_keys_inventory", "audit_trail", "governance_assets", "governance_checks"]
