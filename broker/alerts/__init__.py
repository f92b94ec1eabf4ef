"""Alerts: arming, rules, alert lifecycle, durable store and notifications — pure of MQTT/Influx.

The collector feeds `AlertEngine` (engine.py) what it accepts (events, heartbeats, statuses,
integrity failures, gaps) and a tick; each call returns `Changes` (changes.py) to publish,
write and send. Where the rest lives:

- rules.py: what rules say (`Raise`, `Clear`) under which `AlertKey`; sensor_rules.py and
  unit_rules.py: the rules themselves; arming.py and schedule.py: the arming panel.
- lifecycle.py: signals -> alerts; notifications.py: which alert changes tell people;
  delivery.py: getting them there through apprise; picture_notes.py: an alarm's still, sent
  with its text or following it.
- watches.py: the rule state the engine keeps, by `WatchKey`; engine_state.py: the engine's
  memory; transaction.py: one call staged; store.py: SQLite; alert_points.py: Influx points.

Import from the module that defines a name: this package re-exports nothing.
"""
