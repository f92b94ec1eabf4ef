// The guard post's live page: state from /stream (server-sent events), drawn with DOM calls
// (never innerHTML), alarms sounded with WebAudio, acknowledgements posted with the page's
// CSRF token. No framework, no build step, nothing from the internet.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const layout = document.getElementById("layout");
  const canAck = layout.dataset.canAck === "yes";
  const canOperate = layout.dataset.canOperate === "yes";
  const operateEl = document.getElementById("operate");
  const sitesEl = document.getElementById("sites");
  const alarmsEl = document.getElementById("alarms");
  const connEl = document.getElementById("conn");
  const clockEl = document.getElementById("clock");
  const soundBtn = document.getElementById("sound");
  const summaryEl = document.getElementById("summary");
  const bar = document.getElementById("bar");

  // Words in the reader's language: English msgid -> translation, from the page (the server's
  // gettext catalog, broker/web/page_words.py); `{name}` fields are filled from params.
  const WORDS = JSON.parse(document.getElementById("words").textContent);
  function t(msgid, params) {
    const text = WORDS[msgid] || msgid;
    return text.replace(/\{(\w+)\}/g, (m, k) => (params && k in params ? String(params[k]) : m));
  }
  const RULES = {
    "forced-door": t("Forced door"),
    "door-held-open": t("Door held open"),
    intrusion: t("Intrusion"),
    tamper: t("Tamper"),
    "unit-offline": t("Unit offline"),
    integrity: t("Integrity"),
    "patrol-missed": t("Patrol missed"),
    "camera-fault": t("Camera fault"),
    "unit-health": t("Unit health"),
    "evidence-refused": t("Evidence not kept"),
  };
  const tz = clockEl.dataset.tz || undefined;
  const zoneName = clockEl.dataset.zone || "";

  let sites = new Map();
  let skewMs = 0;
  let streamOpen = false;
  const acking = new Map(); // alert id -> time the ack was sent
  const ackErrors = new Map();
  const heard = new Set();
  let beeps = 0;

  // time -----------------------------------------------------------------------------------

  function nowNs() {
    return (Date.now() + skewMs) * 1e6;
  }
  function setNow(ns) {
    skewMs = ns / 1e6 - Date.now();
  }
  function ago(ns) {
    if (!ns) return t("never");
    const s = Math.max(0, Math.round((nowNs() - ns) / 1e9));
    if (s < 60) return t("{n} s ago", { n: s });
    if (s < 3600) return t("{n} min ago", { n: Math.floor(s / 60) });
    if (s < 86400) return t("{n} h ago", { n: Math.floor(s / 3600) });
    return t("{n} d ago", { n: Math.floor(s / 86400) });
  }
  // `02:29 WIB`: in the site's zone (the server sends it), with the zone's name.
  function hm(ns, site) {
    const s = site && sites.get(site);
    const zone = (s && s.tz) || tz;
    const name = (s && s.zone) || zoneName;
    const text = new Date(ns / 1e6).toLocaleTimeString("en-GB", {
      hour: "2-digit", minute: "2-digit", hour12: false, timeZone: zone,
    });
    return name ? `${text} ${name}` : text;
  }

  // DOM ------------------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k.startsWith("data-")) node.setAttribute(k, String(v));
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  }

  // Keyed patching: a fresh tree is drawn, then only the nodes that differ are swapped in.
  // An unchanged node (the Acknowledge button under a guard's finger, a loaded picture) is
  // never replaced, so frequent updates cannot swallow a click or flicker an image.
  function keyed(node) {
    const kids = [...node.children];
    return kids.length > 0 && kids.every((c) => c.dataset.key);
  }
  function morph(cur, next) {
    if (cur.isEqualNode(next)) return cur;
    if (cur.tagName !== next.tagName || !keyed(next) || !keyed(cur)) {
      cur.replaceWith(next);
      return next;
    }
    for (const a of [...cur.attributes]) if (!next.hasAttribute(a.name)) cur.removeAttribute(a.name);
    for (const a of [...next.attributes]) {
      if (cur.getAttribute(a.name) !== a.value) cur.setAttribute(a.name, a.value);
    }
    patch(cur, [...next.children]);
    return cur;
  }
  function patch(container, nodes) {
    const old = new Map();
    for (const c of [...container.children]) {
      if (c.dataset.key && !old.has(c.dataset.key)) old.set(c.dataset.key, c);
      else c.remove();
    }
    const kept = nodes.map((n) => {
      const cur = old.get(n.dataset.key);
      old.delete(n.dataset.key);
      return cur ? morph(cur, n) : n;
    });
    for (const gone of old.values()) gone.remove();
    kept.forEach((n, i) => {
      if (container.children[i] !== n) container.insertBefore(n, container.children[i] || null);
    });
  }

  // state ----------------------------------------------------------------------------------

  function loadSite(s) {
    sites.set(s.site, {
      site: s.site,
      name: s.name,
      tz: s.tz,
      zone: s.zone,
      arming: s.arming,
      units: new Map(s.units.map((u) => [u.device, u])),
      alerts: new Map(s.alerts.map((a) => [a.id, a])),
    });
  }
  function site(id) {
    if (!sites.has(id)) {
      sites.set(id, { site: id, name: null, arming: null, units: new Map(), alerts: new Map() });
    }
    return sites.get(id);
  }
  function openAlerts() {
    const all = [];
    for (const s of sites.values()) for (const a of s.alerts.values()) all.push(a);
    const rank = (a) => (a.state === "raised" ? 0 : 1) * 2 + (a.severity === "critical" ? 0 : 1);
    return all.sort((a, b) => rank(a) - rank(b) || b.raised_at - a.raised_at);
  }
  function noticeNewAlerts() {
    for (const a of openAlerts()) {
      if (a.state === "raised" && !heard.has(a.id)) {
        heard.add(a.id);
        beep(a.severity === "critical");
      }
      if (a.state !== "raised") acking.delete(a.id);
    }
  }

  // the stream -----------------------------------------------------------------------------

  const stream = new EventSource("/stream");
  const on = (kind, fn) =>
    stream.addEventListener(kind, (e) => {
      fn(JSON.parse(e.data));
      noticeNewAlerts();
      schedule();
    });
  on("snapshot", (d) => {
    setNow(d.now);
    sites = new Map();
    d.sites.forEach(loadSite);
  });
  on("site", loadSite);
  on("unit", (u) => site(u.site).units.set(u.device, u));
  on("alert", (a) => {
    site(a.site).alerts.set(a.id, a);
    ackErrors.delete(a.id);
  });
  on("alert-gone", (d) => site(d.site).alerts.delete(d.id));
  on("arming", (d) => (site(d.site).arming = d));
  on("tick", (d) => setNow(d.now));
  stream.addEventListener("expired", () => {
    stream.close();
    location.assign("/login?expired=1");
  });
  stream.onopen = () => {
    streamOpen = true;
    schedule();
  };
  stream.onerror = () => {
    streamOpen = false;
    schedule();
    if (stream.readyState === EventSource.CLOSED) {
      fetch("/api/state", { credentials: "same-origin" }).then(
        (r) => (r.status === 401 ? location.assign("/login?expired=1") : retryLater()),
        retryLater,
      );
    }
  };
  function retryLater() {
    setTimeout(() => location.reload(), 5000);
  }

  // drawing --------------------------------------------------------------------------------

  let drawPending = false;
  function schedule() {
    if (drawPending) return;
    drawPending = true;
    setTimeout(() => {
      drawPending = false;
      render();
    }, 16);
  }

  function render() {
    const alerts = openAlerts();
    const raised = alerts.filter((a) => a.state === "raised");
    bar.classList.toggle("bar--alarm", raised.some((a) => a.severity === "critical"));
    bar.classList.toggle("bar--warn", raised.length > 0);
    summaryEl.replaceChildren(
      raised.length
        ? el(
            "span",
            { class: "summary-text" },
            t("ALARM: {rule} — {where}", { rule: RULES[raised[0].rule] || raised[0].title, where: where(raised[0]) }),
            raised.length > 1 ? t(" (+{n} more)", { n: raised.length - 1 }) : "",
          )
        : alerts.length
          ? el("span", {}, t("{n} acknowledged, none waiting", { n: alerts.length }))
          : el("span", { class: "calm" }, t("All quiet")),
    );
    document.title = raised.length ? t("({n}) ALARM — Jaga", { n: raised.length }) : t("Jaga guard post");
    connEl.textContent = streamOpen ? t("live") : t("reconnecting…");
    connEl.className = "conn " + (streamOpen ? "conn--live" : "conn--wait");
    patch(alarmsEl, [renderAlarms(alerts)]);
    const shown = [...sites.values()].sort((a, b) => a.site.localeCompare(b.site));
    patch(
      sitesEl,
      shown.length
        ? shown.map(renderSite)
        : [el("p", { class: "empty", "data-key": "empty" }, t("No site to show for this account yet."))],
    );
    renderOperate();
  }

  function where(a) {
    return [a.device, a.sensor].filter(Boolean).join(" / ");
  }

  function renderAlarms(alerts) {
    const box = el("div", { class: "alarms-inner", "data-key": "alarms" });
    box.appendChild(el("h2", { "data-key": "h" }, alerts.length ? t("Alarms ({n})", { n: alerts.length }) : t("Alarms")));
    if (!alerts.length) {
      box.appendChild(el("p", { class: "calm", "data-key": "calm" }, t("No open alarm.")));
      return box;
    }
    for (const a of alerts) box.appendChild(renderAlert(a));
    return box;
  }

  function renderAlert(a) {
    const card = el("article", {
      class: `alarm alarm--${a.state} alarm--${a.severity}`,
      "data-alert-id": a.id,
      "data-state": a.state,
      "data-site": a.site,
      "data-key": `alert:${a.id}`,
    });
    card.appendChild(
      el(
        "header",
        { "data-key": "head" },
        el("span", { class: "alarm-rule" }, RULES[a.rule] || a.rule),
        el("span", { class: "alarm-sev" }, t(a.severity)),
      ),
    );
    card.appendChild(el("h3", { "data-key": "title" }, a.title));
    card.appendChild(
      el(
        "p",
        { class: "alarm-where", "data-key": "where" },
        `${a.site} · ${where(a)} · ` + t("raised {at} ({ago})", { at: a.raised_clock || hm(a.raised_at, a.site), ago: ago(a.raised_at) }),
        a.count > 1 ? ` · ×${a.count}` : "",
      ),
    );
    if (a.detail) card.appendChild(el("p", { class: "alarm-detail", "data-key": "detail" }, a.detail));
    if (a.pictures && a.pictures.length) {
      const strip = el("div", { class: "alarm-pictures", "data-key": "pictures" });
      for (const p of highlights(a.pictures)) {
        strip.appendChild(
          el(
            "figure",
            { class: p.role === "still" ? "pic pic--still" : "pic", title: p.role || "", "data-key": p.sha256 },
            el(
              "a",
              { href: a.event_url || p.url, "data-key": "img" },
              el("img", { src: p.url, alt: `${p.role || t("picture")} ${a.device}`, "data-sha256": p.sha256 }),
            ),
            el("figcaption", { "data-key": "cap" }, p.role || ""),
          ),
        );
      }
      card.appendChild(strip);
    }
    const foot = el("footer", { "data-key": "foot" });
    if (a.event_url) {
      const n = (a.pictures || []).length;
      foot.appendChild(
        el("a", { class: "evidence-link", href: a.event_url }, n ? t("Evidence: all {n} pictures", { n }) : t("Evidence")),
      );
    }
    if (a.state === "acknowledged") {
      foot.appendChild(
        el("span", { class: "acked" }, t("Acknowledged by {by} at {at}", { by: a.acked_by, at: a.acked_clock || hm(a.acked_at, a.site) })),
      );
    } else if (canAck) {
      const busy = acking.has(a.id);
      const form = el(
        "form",
        { method: "post", action: `/alerts/${encodeURIComponent(a.id)}/ack`, class: "ack-form" },
        el("input", { type: "hidden", name: "csrf", value: csrf }),
        el("button", { type: "submit", class: "ack", disabled: busy }, busy ? t("Acknowledging…") : t("Acknowledge")),
      );
      foot.appendChild(form);
    }
    if (ackErrors.has(a.id)) foot.appendChild(el("span", { class: "ack-error" }, ackErrors.get(a.id)));
    card.appendChild(foot);
    return card;
  }

  // The still and the frames nearest the trigger (3 before, 3 after), in signed order; the
  // evidence page has every one.
  function highlights(pictures) {
    const before = pictures.filter((p) => p.role === "before").slice(-3);
    const after = pictures.filter((p) => p.role === "after").slice(0, 3);
    const other = pictures.filter((p) => !["before", "after"].includes(p.role)).slice(0, 6);
    const chosen = new Set([...before, ...after, ...other]);
    return pictures.filter((p) => chosen.has(p));
  }

  function armingBadge(arming) {
    if (!arming) return el("span", { class: "arming arming--unknown" }, t("arming unknown"));
    const st = arming.state;
    let text = t(st.toUpperCase());
    if (arming.until && (st === "arming" || st === "pending")) {
      const left = Math.max(0, Math.round((arming.until - nowNs()) / 1e9));
      text += st === "arming" ? " · " + t("armed in {n} s", { n: left }) : ` · ${arming.entry || t("entry")} · ` + t("alarm in {n} s", { n: left });
    }
    return el("span", { class: `arming arming--${st}`, "data-arming": st, title: arming.by ? t("by {by}", { by: arming.by }) : "" }, text);
  }

  // Zones, two-person requests and bypasses (#18): one line each under the site's name.
  function zoneLines(arming, site) {
    const lines = [];
    const zones = (arming && arming.zones) || [];
    if (zones.length > 1) {
      for (const z of zones) {
        lines.push(el("li", { class: `zone zone--${z.state}`, "data-zone": z.zone, title: z.by ? t("by {by}", { by: z.by }) : "" },
          t("{zone}: {state}", { zone: z.zone, state: t(String(z.state).toUpperCase()) })));
      }
    }
    for (const z of zones) {
      if (!z.request_by || !z.request_until) continue;
      const left = Math.max(0, Math.round((z.request_until - nowNs()) / 1e9));
      lines.push(el("li", { class: "zone-request", "data-request": z.zone },
        t("{zone}: waiting for a second operator ({by}, {n} s)", { zone: z.zone, by: z.request_by, n: left })));
    }
    for (const b of (arming && arming.bypassed) || []) {
      const sensor = `${b.device}/${b.sensor}`;
      // Operators lift a bypass here (the door is repaired): same form path as the controls.
      const lift = canOperate
        ? el("form", { class: "op-form op-unbypass", "data-op": "unbypass" },
          el("input", { type: "hidden", name: "csrf", value: csrf }),
          el("input", { type: "hidden", name: "site", value: site }),
          el("input", { type: "hidden", name: "sensor", value: sensor }),
          el("button", { type: "submit", title: t("Lift the bypass of {sensor}", { sensor }) }, t("Lift")),
          el("output", { class: "op-result" }))
        : null;
      lines.push(el("li", { class: "bypass", "data-bypass": sensor },
        t("bypassed {sensor} until {at} — {by}: {reason}", { sensor, at: hm(b.until, site), by: b.by, reason: b.reason }), " ", lift));
    }
    return lines.length ? el("ul", { class: "zones", "data-key": "zones" }, lines) : null;
  }

  // Operators' controls: drawn again only when the sites or zones change (typing is kept).
  let operateShape = "";
  function renderOperate() {
    if (!canOperate || !operateEl) return;
    const shown = [...sites.values()].sort((a, b) => a.site.localeCompare(b.site));
    const shape = JSON.stringify(shown.map((s) => [s.site, ((s.arming && s.arming.zones) || []).map((z) => z.zone)]));
    if (shape === operateShape) return;
    operateShape = shape;
    operateEl.hidden = !shown.length;
    const siteSelect = (name) => el("select", { name: "site", class: "op-site", "aria-label": t("Site") }, shown.map((s) => el("option", { value: s.site }, s.site)));
    const zones = [...new Set(shown.flatMap((s) => ((s.arming && s.arming.zones) || []).map((z) => z.zone)))];
    const sensors = shown.flatMap((s) => [...s.units.values()].flatMap((u) => (u.sensors || []).filter((x) => x.kind === "door" || x.kind === "motion").map((x) => `${u.device}/${x.name}`)));
    const armForm = el("form", { class: "op-form op-arming", "data-op": "arming" },
      el("input", { type: "hidden", name: "csrf", value: csrf }),
      el("label", {}, t("Site"), " ", siteSelect()),
      el("label", {}, t("Zone"), " ", el("select", { name: "zone" }, el("option", { value: "" }, t("every zone")), zones.map((z) => el("option", { value: z }, z)))),
      el("label", {}, t("PIN (if you have one)"), " ", el("input", { type: "password", name: "code", inputmode: "numeric", autocomplete: "off", size: "6" })),
      el("button", { type: "submit", name: "action", value: "arm" }, t("Arm")),
      el("button", { type: "submit", name: "action", value: "disarm" }, t("Disarm")),
      el("output", { class: "op-result" }),
    );
    const minutes = [30, 60, 120, 240, 480, 720];
    const bypassForm = el("form", { class: "op-form op-bypass", "data-op": "bypass" },
      el("input", { type: "hidden", name: "csrf", value: csrf }),
      el("label", {}, t("Site"), " ", siteSelect()),
      el("label", {}, t("Sensor (unit/sensor)"), " ", el("input", { name: "sensor", list: "op-sensors", required: true, size: "22" })),
      el("datalist", { id: "op-sensors" }, sensors.map((x) => el("option", { value: x }))),
      el("label", {}, t("For"), " ", el("select", { name: "minutes" }, minutes.map((m) => el("option", { value: m }, m < 60 ? t("{n} min", { n: m }) : t("{n} h", { n: m / 60 }))))),
      el("label", {}, t("Reason"), " ", el("input", { name: "reason", required: true, maxlength: "200", size: "24" })),
      el("button", { type: "submit" }, t("Bypass")),
      el("output", { class: "op-result" }),
    );
    operateEl.replaceChildren(el("h2", {}, t("Arming (operators)")), armForm, el("h3", {}, t("Bypass a sensor")), bypassForm);
  }

  if (canOperate) {
    // The controls and each bypass's Lift button (under the site's name) post the same way.
    document.addEventListener("submit", (e) => {
      const form = e.target;
      if (!(form instanceof HTMLFormElement) || !form.dataset.op) return;
      e.preventDefault();
      const data = new FormData(form);
      if (e.submitter && e.submitter.name) data.set(e.submitter.name, e.submitter.value);
      const site = data.get("site");
      const out = form.querySelector(".op-result");
      out.textContent = "…";
      fetch(`/sites/${encodeURIComponent(site)}/${form.dataset.op}`, {
        method: "POST",
        body: data,
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      })
        .then((r) => r.json().then((body) => ({ ok: r.ok, status: r.status, body })))
        .then(({ ok, status, body }) => {
          if (status === 401) location.assign("/login?expired=1");
          out.textContent = ok ? t("done") : body.error || t("not done");
          out.className = "op-result " + (ok ? "op-ok" : "op-error");
          const code = form.querySelector('input[name="code"]');
          if (code) code.value = "";
        })
        .catch(() => {
          out.textContent = t("no answer from the server");
          out.className = "op-result op-error";
        });
    });
  }

  function renderSite(s) {
    const alertsByDevice = new Map();
    for (const a of s.alerts.values()) {
      const prev = alertsByDevice.get(a.device);
      const worse = !prev || (a.state === "raised" && prev.state !== "raised") ||
        (a.state === prev.state && a.severity === "critical");
      if (worse) alertsByDevice.set(a.device, a);
    }
    const units = [...s.units.values()].sort((a, b) => a.device.localeCompare(b.device));
    return el(
      "section",
      { class: "site", "data-site": s.site, "data-key": `site:${s.site}` },
      el(
        "header",
        { class: "site-head", "data-key": "head" },
        el("h2", {}, s.name || s.site, s.name ? el("small", {}, s.site) : null),
        armingBadge(s.arming),
        zoneLines(s.arming, s.site),
      ),
      el(
        "div",
        { class: "tiles", "data-key": "tiles" },
        units.length
          ? units.map((u) => renderUnit(u, alertsByDevice.get(u.device)))
          : el("p", { class: "empty", "data-key": "empty" }, t("No unit has reported yet.")),
      ),
    );
  }

  function unitStatus(u) {
    if (u.online === false) return ["offline", t("OFFLINE")];
    if (u.online === null || u.online === undefined) return ["unknown", t("NOT SEEN")];
    if (u.heartbeat_at && u.heartbeat_interval_s && nowNs() - u.heartbeat_at > 3 * u.heartbeat_interval_s * 1e9) {
      return ["silent", t("SILENT")];
    }
    return ["online", t("ONLINE")];
  }

  function sensorRow(s) {
    let value = "—";
    let cls = "";
    let note = "";
    if (s.kind === "door") {
      value = s.state === "open" ? t("OPEN") : s.state === "held-open" ? t("HELD OPEN") : s.state ? t(s.state) : "—";
      cls = s.state === "open" || s.state === "held-open" ? "hot" : "ok";
      if (s.since && cls === "hot") note = ago(s.since);
    } else if (s.kind === "motion") {
      value = s.state === "motion" ? t("MOTION") : t("still");
      cls = s.state === "motion" ? "hot" : "ok";
      note = s.last_active ? t("last {ago}", { ago: ago(s.last_active) }) : t("no motion yet");
    } else if (s.kind === "tamper") {
      value = s.state === "tampered" ? t("TAMPERED") : s.state ? t("closed") : "—";
      cls = s.state === "tampered" ? "hot" : "ok";
    } else if (s.kind === "patrol") {
      value = s.last_active ? t("check-in") : "—";
      note = s.last_active ? ago(s.last_active) : t("no check-in yet");
    } else if (s.kind === "camera") {
      const bad = s.state && !["recovered", "uncovered", "snapshot"].includes(s.state);
      value = bad ? s.state.toUpperCase() : t("ok");
      cls = bad ? "hot" : "ok";
    }
    return el(
      "li",
      {
        class: `sensor sensor--${s.kind}`,
        "data-sensor": s.name,
        "data-kind": s.kind,
        "data-state": s.state || "",
        "data-key": `sensor:${s.name}`,
      },
      el("span", { class: "sensor-kind" }, t(s.kind)),
      el("span", { class: "sensor-name" }, s.name),
      el("span", { class: `sensor-value ${cls}` }, value),
      note ? el("span", { class: "sensor-note" }, note) : null,
    );
  }

  function renderUnit(u, alert) {
    const [status, statusText] = unitStatus(u);
    const alarm = alert ? alert.state : "none";
    const tile = el("article", {
      class: `tile tile--${status}` + (alert ? ` tile--${alert.state} tile--${alert.severity}` : ""),
      "data-device": u.device,
      "data-status": status,
      "data-alarm": alarm,
      "data-key": `unit:${u.device}`,
    });
    tile.appendChild(
      el(
        "header",
        { class: "tile-head", "data-key": "head" },
        el("h3", {}, u.device),
        el("span", { class: `pill pill--${status}` }, statusText),
      ),
    );
    if (alert) {
      const label = [RULES[alert.rule] || alert.rule, alert.sensor].filter(Boolean).join(" · ");
      const head = alert.state !== "raised" ? t("Acknowledged") : alert.severity === "critical" ? t("ALARM") : t("Warning");
      tile.appendChild(
        el("p", { class: "tile-alarm", title: alert.title, "data-key": "alarm" }, `${head}: ${label}`),
      );
    }
    const pic = u.picture;
    tile.appendChild(
      pic
        ? el(
            "figure",
            { class: "tile-picture", "data-key": "picture" },
            el(
              "a",
              { href: `/events/${encodeURIComponent(pic.event_id)}`, "data-key": "img" },
              el("img", { src: pic.url, alt: t("latest picture from {device}", { device: u.device }) }),
            ),
            el("figcaption", { "data-key": "cap" }, t("picture {ago}", { ago: ago(pic.at) })),
          )
        : el("div", { class: "tile-picture tile-picture--none", "data-key": "picture" }, t("no picture yet")),
    );
    tile.appendChild(el("ul", { class: "sensors", "data-key": "sensors" }, u.sensors.map(sensorRow)));
    const h = u.health || {};
    const bits = [u.heartbeat_at ? t("heartbeat {ago}", { ago: ago(u.heartbeat_at) }) : t("no heartbeat yet")];
    if (typeof h.outbox_depth === "number" && h.outbox_depth > 0) bits.push(t("outbox {n}", { n: h.outbox_depth }));
    if (typeof h.cpu_temp_c === "number") bits.push(`${Math.round(h.cpu_temp_c)} °C`);
    if (h.disk_full) bits.push(t("DISK FULL"));
    tile.appendChild(el("footer", { class: "tile-foot", "data-key": "foot" }, bits.join(" · ")));
    return tile;
  }

  // acknowledging --------------------------------------------------------------------------

  alarmsEl.addEventListener("submit", (e) => {
    const form = e.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("ack-form")) return;
    e.preventDefault();
    const id = form.closest("[data-alert-id]").dataset.alertId;
    acking.set(id, Date.now());
    ackErrors.delete(id);
    audio();
    schedule();
    fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    })
      .then((r) => r.json().then((body) => ({ ok: r.ok, status: r.status, body })))
      .then(({ ok, status, body }) => {
        if (status === 401) location.assign("/login?expired=1");
        if (!ok) {
          acking.delete(id);
          ackErrors.set(id, body.error || t("not acknowledged"));
        }
        schedule();
      })
      .catch(() => {
        acking.delete(id);
        ackErrors.set(id, t("no answer from the server"));
        schedule();
      });
  });

  // sound ----------------------------------------------------------------------------------

  let ctx = null;
  function audio() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    if (!ctx) ctx = new Ctx();
    if (ctx.state === "suspended") ctx.resume().catch(() => {});
    return ctx;
  }
  function tone(c, freq, at, dur) {
    const osc = c.createOscillator();
    const gain = c.createGain();
    osc.type = "square";
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, at);
    gain.gain.exponentialRampToValueAtTime(0.25, at + 0.01);
    gain.gain.exponentialRampToValueAtTime(0.0001, at + dur);
    osc.connect(gain).connect(c.destination);
    osc.start(at);
    osc.stop(at + dur + 0.02);
  }
  function beep(critical) {
    const c = audio();
    if (!c || c.state !== "running") {
      soundBtn.hidden = false;
      return;
    }
    soundBtn.hidden = true;
    const t = c.currentTime + 0.01;
    if (critical) {
      tone(c, 880, t, 0.18);
      tone(c, 660, t + 0.22, 0.18);
    } else {
      tone(c, 660, t, 0.15);
    }
    beeps += 1;
    document.body.dataset.beeps = String(beeps);
  }
  soundBtn.addEventListener("click", () => {
    const c = audio();
    if (!c) return;
    c.resume().then(() => {
      soundBtn.hidden = true;
      tone(c, 660, c.currentTime + 0.01, 0.08);
    });
  });
  document.addEventListener("pointerdown", () => audio());
  let lastWarning = 0;
  setInterval(() => {
    const raised = openAlerts().filter((a) => a.state === "raised");
    if (raised.some((a) => a.severity === "critical")) beep(true);
    else if (raised.length && Date.now() - lastWarning > 10000) {
      lastWarning = Date.now();
      beep(false);
    }
  }, 1500);
  setTimeout(() => {
    const c = audio();
    soundBtn.hidden = !!c && c.state === "running";
  }, 500);

  // the clock and relative times -----------------------------------------------------------

  setInterval(() => {
    clockEl.textContent = hm((Date.now() + skewMs) * 1e6);
  }, 1000);
  setInterval(schedule, 5000);
})();
