"""Running under systemd: sd_notify, a health-gated watchdog, and the wiring of each service.

``notify`` speaks to the service manager, ``health`` decides whether a service is well,
``watchdog`` pings only while it is, ``stall`` is the documented test hook that hangs a main loop,
and ``units`` puts these together for ``jaga-agent run`` and ``jaga-collector run``. Nothing here
imports the agent or the collector at run time; outside systemd every piece is a no-op.
"""
