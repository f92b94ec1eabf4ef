"""The control room's Grafana, as code: an InfluxQL datasource and four dashboards.

Built with Grafana's Foundation SDK (typed builders); `export` writes the provisioning tree
that `jaga-collector grafana export DIR` produces and that is committed under provisioning/.
"""

from broker.grafana.export import ExportSettings, dashboards, export, render

__all__ = ["ExportSettings", "dashboards", "export", "render"]
