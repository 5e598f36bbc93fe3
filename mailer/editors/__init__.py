"""Editors: the accounts of the people who run the list, their sign-in, and the audit log of their changes."""
