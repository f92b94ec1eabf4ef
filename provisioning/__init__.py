"""Technicians' tools: the site CA, the registry of sites and units, bundles and broker config."""
