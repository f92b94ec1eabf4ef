"""The provisioning tree: committed equals generated, the CLI writes it, the JSON is sound."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]
from grafana_foundation_sdk.cog import runtime as cogruntime
from typer.testing import CliRunner

from broker.cli import app
from broker.grafana import datasource
from broker.grafana.export import COMMITTED, DASHBOARDS_PATH, ExportSettings, render
from broker.grafana.influxql import InfluxQL, InfluxQLQuery, register
from broker.grafana.queries import dashboard_queries

UIDS = {"jaga-overview", "jaga-site", "jaga-fleet", "jaga-alerts"}


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _boards(files: dict[str, str]) -> list[dict[str, Any]]:
    return [json.loads(text) for path, text in files.items() if path.endswith(".json")]


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def test_the_committed_provisioning_tree_is_exactly_what_the_code_generates() -> None:
    committed = _tree(COMMITTED)
    generated = render()
    assert sorted(committed) == sorted(generated), "regenerate: jaga-collector grafana export"
    for path, text in generated.items():
        assert committed[path] == text, (
            f"{path} differs from the code; run: "
            "jaga-collector grafana export broker/grafana/provisioning"
        )


def test_export_command_writes_datasources_and_dashboards_under_the_directory(
    tmp_path: Path,
) -> None:
    stale = tmp_path / "dashboards" / "jaga" / "retired.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    result = CliRunner().invoke(app, ["grafana", "export", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert _tree(tmp_path) == render()
    assert not stale.exists(), "a dashboard no longer generated is removed"
    assert "wrote" in result.output


def test_export_options_reach_the_datasource_the_provider_and_the_evidence_links(
    tmp_path: Path,
) -> None:
    result = CliRunner().invoke(
        app,
        [
            "grafana",
            "export",
            str(tmp_path),
            "--influx-url",
            "http://influx.jaga.lan:8086",
            "--database",
            "jaga_prov",
            "--evidence-url",
            "https://pos.jaga.lan:8443/",
            "--dashboards-path",
            "/etc/grafana/jaga/dashboards/jaga",
        ],
    )
    assert result.exit_code == 0, result.output
    (ds,) = yaml.safe_load((tmp_path / "datasources" / "jaga.yaml").read_text())["datasources"]
    assert ds["url"] == "http://influx.jaga.lan:8086"
    assert ds["jsonData"]["dbName"] == ds["database"] == "jaga_prov"
    (provider,) = yaml.safe_load((tmp_path / "dashboards" / "jaga.yaml").read_text())["providers"]
    assert provider["options"]["path"] == "/etc/grafana/jaga/dashboards/jaga"
    site = json.loads((tmp_path / "dashboards" / "jaga" / "site.json").read_text())
    (evidence,) = [v for v in site["templating"]["list"] if v["name"] == "evidence_url"]
    assert evidence["query"] == "https://pos.jaga.lan:8443", "one slash between base and /events"


def test_the_datasource_is_influxql_on_the_jaga_database_under_a_fixed_uid() -> None:
    files = render()
    doc = yaml.safe_load(files["datasources/jaga.yaml"])
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert (ds["uid"], ds["type"], ds["access"]) == (datasource.UID, "influxdb", "proxy")
    assert ds["jsonData"] == {"dbName": "jaga", "httpMode": "GET", "version": "InfluxQL"}
    (provider,) = yaml.safe_load(files["dashboards/jaga.yaml"])["providers"]
    assert provider["type"] == "file"
    assert (
        provider["options"]["path"] == DASHBOARDS_PATH == "${GF_PATHS_PROVISIONING}/dashboards/jaga"
    )


def test_four_dashboards_with_fixed_uids_every_panel_on_the_jaga_datasource() -> None:
    boards = _boards(render())
    assert {b["uid"] for b in boards} == UIDS
    for board in boards:
        panels = _panels(board)
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"{board['uid']}: panel ids repeat"
        for panel in panels:
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "influxdb", "uid": datasource.UID}
            assert panel["targets"], f"{board['uid']} / {panel['title']} has no query"
            for target in panel["targets"]:
                assert target["rawQuery"] is True
                assert target["datasource"]["uid"] == datasource.UID
                assert target["resultFormat"] in ("time_series", "table")


def test_every_dashboard_picks_the_site_from_the_stored_events() -> None:
    for board in _boards(render()):
        (site,) = [v for v in board["templating"]["list"] if v["name"] == "site"]
        assert site["type"] == "query"
        assert site["query"] == 'SHOW TAG VALUES FROM "event" WITH KEY = "site"'
        assert site["datasource"]["uid"] == datasource.UID


def test_overview_repeats_a_row_per_site_and_filters_each_panel_by_it() -> None:
    (board,) = [b for b in _boards(render()) if b["uid"] == "jaga-overview"]
    row = board["panels"][0]
    assert (row["type"], row["repeat"]) == ("row", "site")
    for q in dashboard_queries(board):
        if q.source == "panel":
            assert '"site" =~ /^$site$/' in q.query, q.where


def test_event_ids_link_to_the_guard_posts_evidence_viewer() -> None:
    boards = {b["uid"]: b for b in _boards(render())}
    for uid, title, column in [
        ("jaga-site", "Events", "id"),
        ("jaga-overview", "Last motion", "event"),
        ("jaga-overview", "Last patrol check-in", "event"),
    ]:
        (panel,) = [p for p in _panels(boards[uid]) if p.get("title") == title]
        links = [
            prop["value"]
            for o in panel["fieldConfig"]["overrides"]
            if o["matcher"] == {"id": "byName", "options": column}
            for prop in o["properties"]
            if prop["id"] == "links"
        ]
        assert links == [
            [
                {
                    "title": "Evidence pictures of this event",
                    "url": "${evidence_url}/events/${__value.raw}",
                    "targetBlank": True,
                }
            ]
        ], (uid, title)


def test_site_detail_marks_alerts_with_an_influxql_annotation() -> None:
    (board,) = [b for b in _boards(render()) if b["uid"] == "jaga-site"]
    (annotation,) = board["annotations"]["list"]
    target = annotation["target"]
    assert annotation["datasource"]["uid"] == datasource.UID
    assert target["query"].startswith('SELECT "title", "id"')
    assert (target["textColumn"], target["tagsColumn"]) == ("title", "rule,severity,device")
    assert "$timeFilter" in target["query"]


def test_queries_that_read_the_alert_work_say_so_and_nothing_else_does() -> None:
    boards = _boards(render())
    reading = {
        (q.dashboard, q.where)
        for b in boards
        for q in dashboard_queries(b)
        if 'FROM "alert"' in q.query or 'FROM "arming"' in q.query
    }
    assert reading == {
        ("jaga-overview", "Armed"),
        ("jaga-overview", "Active alerts"),
        ("jaga-site", "Alerts"),
        ("jaga-alerts", "Alert lifecycle"),
        ("jaga-alerts", "Alerts raised per interval, by rule"),
    }


def test_an_influxql_target_round_trips_through_the_sdks_json_reader() -> None:
    register()
    built = InfluxQL('SELECT last("online") FROM "status"').ref_id("B").table().alias("$tag_device")
    built = built.datasource(datasource.ref())
    data = json.loads(json.dumps(built.build().to_json(), default=lambda o: o.to_json()))
    assert data == {
        "refId": "B",
        "query": 'SELECT last("online") FROM "status"',
        "rawQuery": True,
        "resultFormat": "table",
        "alias": "$tag_device",
        "datasource": {"type": "influxdb", "uid": datasource.UID},
    }
    back = cogruntime.dataquery_from_json(data, "")
    assert isinstance(back, InfluxQLQuery)
    assert (back.ref_id, back.query, back.result_format, back.alias) == (
        "B",
        'SELECT last("online") FROM "status"',
        "table",
        "$tag_device",
    )


def test_rendering_twice_gives_the_same_bytes() -> None:
    """Builders keep layout state; a second build must not shift panels or renumber them."""
    assert render(ExportSettings()) == render(ExportSettings())
