"""What the dashboards read from the measurements the alert and arming work writes (issue #5).

TODO(#5): the collector does not write these yet. The panels follow the schema of
broker/alerts/alert_points.py as it stands in the alert work; their tests skip until the first
point is stored. If #5 changes the schema, change it here and in the queries that use it:

  alert [site, device, sensor, rule, severity, state]   one point per lifecycle change
      id          field (string): the alert's id, as in jaga/v1/<site>/alert/<id>
      change      field (string): raised | repeated | acknowledged | cleared | resolved
      status      field (string): the alert's state after the change (= the state tag)
      open        field (int): 1 while raised or acknowledged, 0 once cleared or resolved
      count, title, detail, by
      raised_ns, acked_ns, closed_ns   fields (int, ns since the epoch; 0 = not yet)
  arming [site, zone, state, how]                        one point per arming change
      armed       field (int): 1 while armed or pending (guarding), else 0
      by, from, reason, with_by (the first of a two-person disarm)
  bypass [site, zone, device, sensor]                    a bypass starting (active 1) or
      active, by, reason, how, until_ns                  ending (active 0; #18)

One key (site, device, sensor, rule) has at most one open alert, so the latest point of a
key says whether it has an open alert.
"""

from __future__ import annotations

ALERT = "alert"
ARMING = "arming"
BYPASS = "bypass"
ALERT_KEY = ("device", "sensor", "rule", "severity")
"""Tags (besides site) that make an alert's key; severity is fixed per rule."""
