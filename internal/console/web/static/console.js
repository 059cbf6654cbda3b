// falbridge console: the live table of the jobs page, fed by server-sent
// events from /console/live. Everything else is server-rendered.
"use strict";
(function () {
  const table = document.querySelector("#live tbody");
  if (!table) return;
  const prefix = document.body.dataset.prefix;
  const state = document.getElementById("live-state");
  const rows = new Map();
  const maxRows = 200;

  function cell(tr, i) { return tr.children[i]; }
  function rowFor(id) {
    let tr = rows.get(id);
    if (tr) return tr;
    tr = document.createElement("tr");
    tr.dataset.id = id;
    for (let i = 0; i < 7; i++) tr.appendChild(document.createElement("td"));
    const a = document.createElement("a");
    a.href = prefix + "/jobs/" + encodeURIComponent(id);
    a.textContent = id;
    cell(tr, 0).appendChild(a);
    table.prepend(tr);
    rows.set(id, tr);
    while (rows.size > maxRows) {
      const last = table.lastElementChild;
      rows.delete(last.dataset.id);
      last.remove();
    }
    return tr;
  }
  function apply(e) {
    const tr = rowFor(e.id);
    if (e.model_id) cell(tr, 1).textContent = e.model_id;
    if (e.tenant) cell(tr, 2).textContent = e.tenant;
    if (e.state) cell(tr, 3).textContent = e.state;
    if (e.queue_position !== undefined && e.state === "IN_QUEUE") cell(tr, 4).textContent = e.queue_position;
    else if (e.state && e.state !== "IN_QUEUE") cell(tr, 4).textContent = "";
    if (e.received_at) tr.dataset.received = e.received_at;
    if (e.outcome) {
      const c = cell(tr, 6);
      c.textContent = e.outcome;
      c.className = e.outcome === "result" ? "ok" : "bad";
      tr.dataset.done = e.at || new Date().toISOString();
    }
    if (e.retry_of) tr.dataset.retryOf = e.retry_of;
    tr.classList.remove("fresh"); void tr.offsetWidth; tr.classList.add("fresh");
    tick(tr);
  }
  function tick(tr) {
    if (!tr.dataset.received) return;
    const end = tr.dataset.done ? Date.parse(tr.dataset.done) : Date.now();
    const s = Math.max(0, (end - Date.parse(tr.dataset.received)) / 1000);
    cell(tr, 5).textContent = s < 60 ? s.toFixed(1) + "s" : Math.floor(s / 60) + "m" + Math.floor(s % 60) + "s";
  }
  setInterval(() => rows.forEach(tick), 1000);

  const es = new EventSource(prefix + "/live");
  es.onopen = () => { state.textContent = "live"; document.body.dataset.live = "open"; };
  es.onerror = () => { state.textContent = "reconnecting…"; document.body.dataset.live = "error"; };
  es.onmessage = (m) => { try { apply(JSON.parse(m.data)); } catch (err) { console.error(err); } };
})();
