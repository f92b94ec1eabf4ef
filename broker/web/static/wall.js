// The wall: one multipart stream carries every camera's frames; the page's state (online,
// alarms) comes from /api/state, refreshed whenever the guard post's event stream says so.
"use strict";
(() => {
  const wall = document.getElementById("wall");
  if (!wall) return;
  const T = (k) => wall.dataset["t" + k] || k;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const tiles = new Map([...wall.querySelectorAll(".cam")].map((t) => [t.dataset.camera, t]));
  const urls = new Map(); // camera -> [older, newer] blob URLs (kept until the next replaces them)
  const big = { camera: null, el: document.getElementById("big") };
  const conn = document.getElementById("wall-conn");
  window.jagaShown = []; // {camera, ageMs}, at most the last 5000 (read by tests and bench)
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  const SEP = enc.encode("\r\n\r\n");

  function indexOf(buf, pat, from) {
    outer: for (let i = from; i <= buf.length - pat.length; i++) {
      for (let j = 0; j < pat.length; j++) if (buf[i + j] !== pat[j]) continue outer;
      return i;
    }
    return -1;
  }

  function show(camera, captured, jpeg) {
    const tile = tiles.get(camera);
    if (!tile) return;
    const url = URL.createObjectURL(new Blob([jpeg], { type: "image/jpeg" }));
    const kept = urls.get(camera) || [];
    if (kept.length >= 2) URL.revokeObjectURL(kept.shift());
    kept.push(url);
    urls.set(camera, kept);
    const img = tile.querySelector(".cam-img");
    img.onload = () => {
      const age = Date.now() - captured;
      window.jagaShown.push({ camera, ageMs: age });
      if (window.jagaShown.length > 5000) window.jagaShown.shift();
      tile.dataset.frames = String(Number(tile.dataset.frames || 0) + 1);
    };
    img.src = url;
    tile.dataset.captured = String(captured);
    if (big.camera === camera) document.getElementById("big-img").src = url;
  }

  async function stream() {
    if (wall.dataset.live !== "yes" || tiles.size === 0) return;
    try {
      const res = await fetch("/wall/stream", { credentials: "same-origin", cache: "no-store" });
      if (!res.ok) throw new Error("HTTP " + res.status);
      conn.className = "conn conn--ok";
      conn.textContent = T("Live");
      const reader = res.body.getReader();
      let buf = new Uint8Array(0);
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const joined = new Uint8Array(buf.length + value.length);
        joined.set(buf);
        joined.set(value, buf.length);
        buf = joined;
        for (;;) {
          const end = indexOf(buf, SEP, 0);
          if (end < 0) break;
          const head = dec.decode(buf.subarray(0, end));
          const h = {};
          for (const line of head.split("\r\n")) {
            const at = line.indexOf(":");
            if (at > 0) h[line.slice(0, at).trim().toLowerCase()] = line.slice(at + 1).trim();
          }
          const len = Number(h["content-length"] || -1);
          if (len < 0) { buf = buf.subarray(end + 4); continue; }
          if (buf.length < end + 4 + len + 2) break;
          const jpeg = buf.slice(end + 4, end + 4 + len);
          buf = buf.subarray(end + 4 + len + 2);
          const ns = h["x-captured-ns"] || "0";
          show(h["x-camera"], Number(BigInt(ns) / 1000000n), jpeg);
        }
      }
    } catch (e) {
      // reconnect below
    }
    conn.className = "conn conn--down";
    conn.textContent = "…";
    setTimeout(stream, 2000);
  }

  function ages() {
    const now = Date.now();
    for (const tile of tiles.values()) {
      const at = Number(tile.dataset.captured || 0);
      const el = tile.querySelector(".cam-age");
      el.textContent = at ? T("Ago").replace("{s}", ((now - at) / 1000).toFixed(1)) : T("NoPicture");
      tile.classList.toggle("cam--stale", !at || now - at > 5000);
    }
  }

  let state = null;
  async function refresh() {
    try {
      const res = await fetch("/api/state", { credentials: "same-origin", cache: "no-store" });
      if (res.status === 401) { location.href = "/login?next=/wall"; return; }
      state = await res.json();
    } catch (e) { return; }
    for (const tile of tiles.values()) {
      const site = state.sites.find((s) => s.site === tile.dataset.site);
      const unit = site && site.units.find((u) => u.device === tile.dataset.device);
      const alarms = site ? site.alerts.filter((a) => a.device === tile.dataset.device
        && (a.state === "raised" || a.state === "acknowledged")) : [];
      const online = unit ? unit.online : null;
      tile.dataset.status = online === true ? "online" : online === false ? "offline" : "unknown";
      tile.querySelector(".cam-status").textContent = online === false ? T("Offline") : online ? T("Online") : "";
      const alarm = alarms.sort((a, b) => b.raised_at - a.raised_at)[0];
      tile.classList.toggle("cam--alarm", Boolean(alarm));
      tile.dataset.alarm = alarm ? alarm.state : "";
      tile.querySelector(".cam-alarm").textContent = alarm ? alarm.title : "";
      tile.lastAlarm = alarm || null;
      tile.unit = unit || null;
    }
    if (big.camera) fillBig();
  }
  let pending = null;
  function soon() { if (!pending) pending = setTimeout(() => { pending = null; refresh(); }, 150); }

  function fillBig() {
    const tile = tiles.get(big.camera);
    const alarm = tile.lastAlarm;
    const pic = document.getElementById("big-picture");
    const link = document.getElementById("big-link");
    document.getElementById("big-caption").textContent = big.camera;
    document.getElementById("big-alarm").textContent = alarm ? alarm.title : "—";
    const pictures = alarm && alarm.pictures && alarm.pictures.length ? alarm.pictures : null;
    const still = pictures ? (pictures.find((p) => p.role === "still") || pictures[0]) : (tile.unit && tile.unit.picture);
    pic.hidden = !still;
    if (still && pic.getAttribute("src") !== still.url) pic.src = still.url;
    link.hidden = !(alarm && alarm.event_url);
    if (alarm && alarm.event_url) link.href = alarm.event_url;
  }

  function open(camera) {
    big.camera = camera;
    big.el.hidden = false;
    wall.hidden = true;
    const kept = urls.get(camera);
    document.getElementById("big-img").src = kept ? kept[kept.length - 1] : "";
    fillBig();
  }
  document.getElementById("big-close").addEventListener("click", () => {
    big.camera = null; big.el.hidden = true; wall.hidden = false;
  });

  for (const tile of tiles.values()) {
    tile.addEventListener("click", (ev) => {
      if (ev.target.closest(".cam-save")) return;
      open(tile.dataset.camera);
    });
    tile.querySelector(".cam-save").addEventListener("click", async (ev) => {
      const button = ev.currentTarget;
      button.disabled = true;
      const body = new URLSearchParams({ csrf, camera: tile.dataset.camera });
      let ok = false;
      try {
        const res = await fetch("/wall/save", { method: "POST", body, credentials: "same-origin" });
        ok = res.ok;
      } catch (e) { ok = false; }
      tile.dataset.saved = ok ? "yes" : "no";
      button.title = ok ? T("Saved") : T("SaveFailed");
      setTimeout(() => { button.disabled = false; }, 3000);
    });
  }

  wall.style.setProperty("--cols", String(Math.ceil(Math.sqrt(Math.max(1, tiles.size)))));
  const events = new EventSource("/stream");
  events.onmessage = soon;
  for (const kind of ["snapshot", "unit", "alert", "alert-gone", "arming", "site"]) events.addEventListener(kind, soon);
  refresh();
  setInterval(refresh, 5000);
  setInterval(ages, 250);
  stream();
})();
