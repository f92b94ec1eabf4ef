"""The wire contract shared by units and the collector; imports nothing from agent/ or broker/."""

PROTOCOL_VERSION = 1
