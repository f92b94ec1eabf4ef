"""What the unit and the collector both need and the wire contract does not: atomic files, SQLite,
strict config, units of time and size, the MQTT client. Imports nothing from agent/ or broker/."""
