// The mcgw dashboard: renders /api/dashboard, then every document the server pushes on
// /api/dashboard/events (server-sent events), without reloading the page. No dependencies.
"use strict";

const el = (tag, attributes = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
};

const rate = (value) => `${(value || 0).toFixed(value >= 100 ? 0 : 1)} req/s`;
const percent = (share) => `${Math.round(100 * (share || 0))}%`;
const clock = (at) => (at ? new Date(at).toLocaleTimeString() : "");

function renderClusters(doc) {
  const cards = doc.clusters.map((c) => {
    const state = !c.available ? "bad" : c.synced ? "ok" : "warn";
    const words = !c.available ? `API server unreachable${c.reason ? ": " + c.reason : ""}`
      : c.synced ? "API server reachable, synced" : "syncing";
    return el("div", { class: "card", "data-cluster": c.name, "data-available": String(c.available) },
      el("div", { class: "name" }, el("span", { class: `dot ${state}` }), c.name),
      el("div", { class: "muted" }, words),
      c.lost ? el("div", { class: "pill bad" }, "lost: endpoints kept until the TTL") : "",
      c.leader === true ? el("div", { class: "muted" }, "this replica leads it") : "");
  });
  document.getElementById("clusters").replaceChildren(...cards);
}

function renderLevel(level, serving) {
  const isServing = level.priority === serving;
  const clusters = level.clusters.map((c) => {
    const health = c.lost ? "bad" : c.healthy === null ? "" : c.healthy > 0 ? "ok" : "bad";
    const count = c.healthy === null ? "" : ` ${c.healthy} healthy${c.draining ? `, ${c.draining} draining` : ""}`;
    return el("span", { "data-source-cluster": c.name }, el("span", { class: `dot ${health}` }), c.name, count);
  });
  const bar = el("div", { class: "bar", title: percent(level.share) }, el("div"));
  bar.firstChild.style.width = percent(level.share);
  return el("div", { class: `level${isServing ? " is-serving" : ""}`, "data-priority": String(level.priority),
                     "data-share": String(level.share) },
    el("div", {}, `priority ${level.priority}`, isServing ? el("div", { class: "serving" }, "serving") : ""),
    el("div", {}, el("div", { class: "clusters" }, ...clusters), bar),
    el("div", { class: "numbers" }, `${percent(level.share)} · ${rate(level.requestsPerSecond)}`,
      el("div", { class: "muted" }, `${rate(level.errorsPerSecond)} errors · ${level.inFlight} in flight`)));
}

function renderServices(doc) {
  const blocks = doc.services.map((s) => {
    const serving = s.levels.find((l) => l.priority === s.servingPriority);
    const who = serving ? `${serving.clusters.map((c) => c.name).join(", ")} (priority ${serving.priority})` : "—";
    return el("div", { class: "service", "data-service": s.service, "data-gateway": `${s.cluster}:${s.gateway}`,
                       "data-serving-priority": String(s.servingPriority) },
      el("h3", {}, `${s.service} `, el("span", { class: "muted" }, `through ${s.gateway} in ${s.cluster}`)),
      el("div", { class: "muted" }, "served by ", el("span", { class: "serving served-by" }, who)),
      s.capacity ? el("div", { class: "muted capacity", "data-overflow-share": String(s.capacity.overflowShare) },
        `capacity ${rate(s.capacity.capacity)} · load ${rate(s.capacity.requestsPerSecond)} · `
        + `${Math.round(100 * s.capacity.overflowShare)}% past the first level`) : "",
      ...s.levels.map((l) => renderLevel(l, s.servingPriority)));
  });
  document.getElementById("services").replaceChildren(...blocks);
  document.getElementById("no-reports").hidden = doc.services.length > 0;
}

function renderTimeline(doc) {
  const items = doc.events.slice().reverse().map((e) => el("li", {
    class: "event", "data-service": e.service, "data-from": String(e.from.priority), "data-to": String(e.to.priority) },
    el("time", { dateTime: e.at }, clock(e.at)),
    `${e.service} through ${e.gateway} in ${e.cluster}: priority ${e.from.priority} (${e.from.clusters.join(", ")})`,
    ` → priority ${e.to.priority} (${e.to.clusters.join(", ")}), ${percent(e.share)} of ${rate(e.requestsPerSecond)}`));
  document.getElementById("timeline").replaceChildren(...items);
  document.getElementById("no-events").hidden = doc.events.length > 0;
}

function renderGateways(doc) {
  const rows = doc.gateways.map((g) => {
    const envoys = g.envoys.length ? g.envoys.map((e) => el("div", { "data-envoy-state": e.state },
      el("span", { class: `pill ${e.state === "ACK" ? "ok" : e.state === "NACK" ? "bad" : "warn"}` }, e.state), " ",
      e.nodeId, e.lastNackError ? el("div", { class: "muted" }, e.lastNackError) : "")) : ["none connected"];
    const programmed = g.programmed === null ? "—" : g.programmed ? "yes" : "no";
    return el("tr", { "data-gateway": `${g.cluster}:${g.name}` }, el("td", {}, g.cluster), el("td", {}, g.name),
      el("td", {}, g.addresses.join(", ") || "—"), el("td", {}, programmed), el("td", {}, ...envoys));
  });
  document.querySelector("#gateways tbody").replaceChildren(...rows);
}

function render(doc) {
  document.getElementById("mode").textContent = doc.mode ? `mode: ${doc.mode}` : "";
  const ready = document.getElementById("ready");
  ready.textContent = doc.ready ? "ready" : "not ready";
  ready.className = `pill ${doc.ready ? "ok" : "warn"}`;
  renderClusters(doc);
  renderServices(doc);
  renderTimeline(doc);
  renderGateways(doc);
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}

function live() {
  const status = document.getElementById("live");
  const source = new EventSource("api/dashboard/events");
  source.addEventListener("state", (message) => {
    status.textContent = "live";
    status.className = "pill ok";
    render(JSON.parse(message.data));
  });
  source.onerror = () => {
    status.textContent = "reconnecting";
    status.className = "pill warn";
  };
}

fetch("api/dashboard").then((response) => response.json()).then(render).finally(live);
