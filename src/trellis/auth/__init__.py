"""Authentication (users, tokens), authorization (Cedar policies) and the audit log."""
