// The flow editor: Drawflow canvas <-> Trellis flow JSON, properties, deploy, live debug.
//
// Drawflow inserts node HTML as raw HTML, so node bodies are built from fixed markup
// and every user-typed text reaches the page through textContent only. Ports are typed
// the way the server checks them (FEEDS); a wire the server would refuse is removed at
// once with a message. Undo restores the previous export (one step per change).
"use strict";

(function () {
  const ON = ["raise", "clear", "raise,clear"];
  const ACTIONS = ["alert", "webhook", "command", "desired", "emit", "predict"];
  const FEEDS = {
    source: ["filter", "transform", "window", "model", "condition"],
    filter: ["filter", "transform", "window", "model", "condition"],
    transform: ["window", "model", "condition"],
    window: ["model", "condition"],
    model: ["condition"],
    condition: ACTIONS,
    alert: [],
    webhook: [],
    command: [],
    desired: [],
    emit: [],
    predict: [],
    subflow: [],
  };
  const PORTS = {  // inputs, outputs
    source: [0, 1], filter: [1, 1], transform: [1, 1], window: [1, 1], model: [1, 1], condition: [1, 1],
    alert: [1, 0], webhook: [1, 0], command: [1, 0], desired: [1, 0], emit: [1, 0], predict: [1, 0],
    subflow: [0, 0],
  };
  const FIELDS = {
    source: [["metric", "text", "temperature"], ["models", "text", "pump"], ["sites", "text", ""]],
    filter: [["where", "text", "value > -40.0"]],
    transform: [["expression", "text", "value * 1.8 + 32.0"]],
    window: [["kind", ["sliding", "tumbling", "session"], "sliding"], ["size_s", "number", "60"],
             ["gap_s", "number", "0"]],
    condition: [["condition", "text", "value > 80.0"], ["for_s", "number", "0"], ["clear", "text", ""],
                ["debounce_s", "number", "0"]],
    alert: [["severity", ["critical", "major", "minor", "warning", "indeterminate"], "major"],
            ["name", "text", ""]],
    webhook: [["url", "text", "http://"], ["attempts", "number", "5"]],
    model: [["model", "text", "pump-anomaly"], ["fallback", "number", "0"], ["refresh_s", "number", "10"],
            ["timeout_s", "number", "2"]],
    command: [["name", "text", "reduce-load"], ["args", "text", "{}"], ["on", ON, "raise"],
              ["timeout_s", "number", "10"]],
    desired: [["state", "text", "{\"mode\": \"eco\"}"], ["on", ON, "raise"]],
    emit: [["metric", "text", ""], ["value", "number", ""], ["on", ON, "raise"]],
    predict: [["model", "text", "pump-anomaly"], ["emit", "text", "anomaly_score"], ["output", "text", "scores"],
              ["on", ON, "raise"], ["timeout_s", "number", "5"]],
    subflow: [["flow", "text", "name@1"], ["models", "text", ""], ["sites", "text", ""]],
  };
  const NUMBERS = new Set(["size_s", "gap_s", "for_s", "debounce_s", "attempts", "fallback", "refresh_s",
                           "timeout_s", "value"]);
  const OBJECTS = new Set(["args", "state"]);  // typed as JSON text in the panel

  const root = document.getElementById("flow-root");
  const status = document.getElementById("flow-status");
  const props = document.getElementById("props");
  // The page's CSRF token: the API wants it for changes made with a dashboard session.
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  // Enter in a field must not submit (the CSP forbids inline onsubmit handlers).
  for (const form of [props, document.getElementById("flow-bar")]) {
    if (form) form.addEventListener("submit", (event) => event.preventDefault());
  }
  const flowIdInput = document.getElementById("flow-id");
  const editor = new Drawflow(document.getElementById("drawflow"));
  editor.reroute = false;
  editor.start();

  let counter = 0;
  let loading = false;
  const undoStack = [];

  function say(text, bad) {
    status.textContent = text;
    status.classList.toggle("bad", Boolean(bad));
  }

  function remember() {
    if (loading) return;
    undoStack.push(JSON.stringify(editor.export()));
    if (undoStack.length > 50) undoStack.shift();
  }

  function summary(type, data) {
    if (type === "source") return `${data.metric || "?"} of ${data.models || "any model"}`;
    if (type === "filter") return data.where || "";
    if (type === "transform") return data.expression || "";
    if (type === "window") return `${data.kind} ${data.kind === "session" ? data.gap_s : data.size_s} s`;
    if (type === "condition") return data.condition + (Number(data.for_s) ? ` for ${data.for_s} s` : "");
    if (type === "alert") return data.severity;
    if (type === "model") return `${data.model} → prediction.*`;
    if (type === "command") return `${data.name} on ${data.on}`;
    if (type === "desired") return data.state;
    if (type === "emit") return `${data.metric}${data.value !== "" ? ` = ${data.value}` : ""}`;
    if (type === "subflow") return data.flow;
    if (type === "predict") return `${data.model}.${data.output} → ${data.emit}`;
    return data.url || "";
  }

  function render(nodeId) {
    const node = editor.getNodeFromId(nodeId);
    const el = document.querySelector(`#node-${nodeId} .node-summary`);
    if (el) el.textContent = summary(node.name, node.data);
    const name = document.querySelector(`#node-${nodeId} .node-name`);
    if (name) name.textContent = node.data.nid;
  }

  function addNode(type, x, y, data) {
    const [ins, outs] = PORTS[type];
    const defaults = {};
    for (const [field, , value] of FIELDS[type]) defaults[field] = value;
    const nid = (data && data.nid) || `${type}${++counter}`;
    const html = `<div class="node-body"><strong class="node-type">${type}</strong>` +
      `<span class="node-name mono"></span><div class="node-summary small"></div></div>`;
    const id = editor.addNode(type, ins, outs, x, y, `flow-node ${type}`,
      Object.assign(defaults, data || {}, { nid }), html);
    render(id);
    return id;
  }

  // -- palette: drag and drop ------------------------------------------------------
  for (const item of document.querySelectorAll(".palette-item")) {
    item.addEventListener("dragstart", (event) => {
      event.dataTransfer.setData("text/plain", item.dataset.node);
    });
  }
  const canvas = document.getElementById("drawflow");
  canvas.addEventListener("dragover", (event) => event.preventDefault());
  canvas.addEventListener("drop", (event) => {
    event.preventDefault();
    const type = event.dataTransfer.getData("text/plain");
    if (!FEEDS[type]) return;
    remember();
    const rect = editor.precanvas.getBoundingClientRect();
    const zoom = editor.zoom || 1;
    addNode(type, (event.clientX - rect.x) / zoom, (event.clientY - rect.y) / zoom);
  });

  // -- typed wires -------------------------------------------------------------------
  editor.on("connectionCreated", (c) => {
    const from = editor.getNodeFromId(c.output_id).name;
    const to = editor.getNodeFromId(c.input_id).name;
    if (!FEEDS[from].includes(to)) {
      editor.removeSingleConnection(c.output_id, c.input_id, c.output_class, c.input_class);
      const an = (word) => (/^[aeiou]/.test(word) ? `an ${word}` : `a ${word}`);
      const feeds = FEEDS[from].join(", ") || "nothing";
      say(`${an(from).replace(/^a/, "A")} node cannot feed ${an(to)} node; it feeds ${feeds}.`, true);
      return;
    }
    remember();
  });
  editor.on("nodeRemoved", () => remember());

  // -- properties panel --------------------------------------------------------------
  function showProps(nodeId) {
    const node = editor.getNodeFromId(nodeId);
    props.replaceChildren();
    const title = document.createElement("p");
    title.textContent = `${node.name} node`;
    props.append(title);
    const fields = [["nid", "text", ""], ...FIELDS[node.name]];
    for (const [field, kind] of fields) {
      const label = document.createElement("label");
      label.textContent = field === "nid" ? "id" : field;
      let input;
      if (Array.isArray(kind)) {
        input = document.createElement("select");
        for (const option of kind) {
          const o = document.createElement("option");
          o.value = option;
          o.textContent = option;
          input.append(o);
        }
      } else {
        input = document.createElement("input");
        input.type = kind;
        if (kind === "number") input.step = "any";
      }
      input.name = field;
      input.id = `prop-${field}`;
      input.value = node.data[field] ?? "";
      input.addEventListener("change", () => {
        remember();
        const data = Object.assign({}, editor.getNodeFromId(nodeId).data, { [field]: input.value });
        editor.updateNodeDataFromId(nodeId, data);
        render(nodeId);
      });
      label.append(input);
      props.append(label);
    }
  }
  editor.on("nodeSelected", (id) => showProps(id));
  editor.on("nodeUnselected", () => {
    props.replaceChildren();
    const hint = document.createElement("p");
    hint.className = "muted small";
    hint.textContent = "Select a node.";
    props.append(hint);
  });

  // -- Drawflow <-> flow JSON --------------------------------------------------------
  function list(text) {
    return String(text || "").split(",").map((s) => s.trim()).filter(Boolean);
  }

  function toFlow() {
    const data = editor.export().drawflow.Home.data;
    const nodes = [];
    const edges = [];
    const layout = {};
    for (const node of Object.values(data)) {
      const d = node.data;
      const out = { id: d.nid, type: node.name };
      const selects = node.name === "source" || node.name === "subflow";
      for (const [field] of FIELDS[node.name]) {
        let value = d[field];
        if (selects && (field === "models" || field === "sites")) continue;
        if (value === "" || value === undefined) continue;
        if (field === "on") value = list(value);
        else if (OBJECTS.has(field)) {
          try { value = JSON.parse(value); } catch (error) {
            throw new Error(`node ${d.nid}: ${field} is not JSON: ${error.message}`);
          }
        } else if (NUMBERS.has(field)) value = Number(value);
        out[field] = value;
      }
      if (selects) {
        const select = {};
        if (list(d.models).length) select.models = list(d.models);
        if (list(d.sites).length) select.sites = list(d.sites);
        if (node.name === "source" || Object.keys(select).length) out.select = select;
      }
      nodes.push(out);
      layout[d.nid] = [Math.round(node.pos_x), Math.round(node.pos_y)];
      for (const port of Object.values(node.outputs)) {
        for (const c of port.connections) edges.push([d.nid, data[c.node].data.nid]);
      }
    }
    return { id: flowIdInput.value.trim(), nodes, edges, layout, tests: [] };
  }

  function load(flow) {
    loading = true;
    editor.clear();
    const ids = {};
    flow.nodes.forEach((n, i) => {
      const [x, y] = (flow.layout && flow.layout[n.id]) || [60 + 220 * i, 120];
      const data = Object.assign({}, n, { nid: n.id });
      delete data.id;
      delete data.type;
      if (n.type === "source" || n.type === "subflow") {
        data.models = ((n.select || {}).models || []).join(", ");
        data.sites = ((n.select || {}).sites || []).join(", ");
        delete data.select;
      }
      for (const field of OBJECTS) if (field in data) data[field] = JSON.stringify(data[field]);
      if (Array.isArray(data.on)) data.on = data.on.join(",");
      ids[n.id] = addNode(n.type, x, y, data);
      const m = /(\d+)$/.exec(n.id);
      if (m) counter = Math.max(counter, Number(m[1]));
    });
    for (const [a, b] of flow.edges) editor.addConnection(ids[a], ids[b], "output_1", "input_1");
    loading = false;
  }

  function highlight(message) {
    for (const el of document.querySelectorAll(".drawflow-node.invalid")) el.classList.remove("invalid");
    const m = /\$\.nodes\[(\d+)\]/.exec(message) || /node '([^']+)'/.exec(message);
    if (!m) return;
    const data = editor.export().drawflow.Home.data;
    const nodes = Object.values(data);
    const target = /^\d+$/.test(m[1]) ? nodes[Number(m[1])] : nodes.find((n) => n.data.nid === m[1]);
    if (target) document.getElementById(`node-${target.id}`).classList.add("invalid");
  }

  async function deploy() {
    let flow;
    try { flow = toFlow(); } catch (error) { say(error.message, true); highlight(error.message); return; }
    if (!flowIdInput.reportValidity()) return;
    const existing = root.dataset.flow && root.dataset.flow !== "null" ? JSON.parse(root.dataset.flow) : null;
    if (existing && existing.id === flow.id) flow.tests = existing.tests || [];
    say("Validating…");
    const saved = await fetch(`/api/v1/flows/${encodeURIComponent(flow.id)}`, {
      method: "PUT", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(flow),
    });
    if (!saved.ok) {
      const detail = (await saved.json()).detail;
      const text = typeof detail === "string" ? detail : JSON.stringify(detail);
      say(text, true);
      highlight(text);
      return;
    }
    highlight("");
    const deployed = await fetch(`/api/v1/flows/${encodeURIComponent(flow.id)}/deploy`, { method: "POST", headers: { "X-CSRF-Token": csrf } });
    const body = await deployed.json();
    if (!deployed.ok) { say(String(body.detail), true); return; }
    root.dataset.flow = JSON.stringify(flow);
    say(`Deployed ${flow.id} v${body.version}.`);
    window.history.replaceState(null, "", `/flows/${encodeURIComponent(flow.id)}/edit`);
  }

  document.getElementById("deploy").addEventListener("click", deploy);
  document.getElementById("undo").addEventListener("click", () => {
    const previous = undoStack.pop();
    if (!previous) return;
    loading = true;
    editor.import(JSON.parse(previous));
    for (const id of Object.keys(JSON.parse(previous).drawflow.Home.data)) render(id);
    loading = false;
  });

  // -- live debug: the flow's rules as the engine sees them ---------------------------
  async function poll() {
    const id = flowIdInput.value.trim();
    if (id) {
      try {
        const prefix = `flow.${id}.`;
        const stats = (await (await fetch("/api/v1/rules/stats")).json()).filter((s) => s.rule.startsWith(prefix));
        const rows = stats.map((s) => {
          const tr = document.createElement("tr");
          tr.dataset.rule = s.rule;
          const micro = s.readings ? (s.busy_ns / s.readings / 1000).toFixed(1) : "–";
          for (const v of [s.rule.slice(prefix.length), s.readings, s.raised, s.cleared, s.errors, micro]) {
            const td = document.createElement("td");
            td.textContent = String(v);
            tr.append(td);
          }
          if (s.last_error) tr.title = s.last_error;
          return tr;
        });
        document.querySelector("#debug tbody").replaceChildren(...rows);
        const traces = await Promise.all(stats.map(async (s) => {
          const entries = await (await fetch(`/api/v1/rules/${encodeURIComponent(s.rule)}/trace`)).json();
          return entries.slice(-8).map(([device, ts, value, holds]) => {
            const li = document.createElement("li");
            li.textContent = `${s.rule.slice(prefix.length)} ← ${device} ${value} ${holds ? "✔" : "✘"}`;
            li.dataset.holds = String(holds);
            return li;
          });
        }));
        document.getElementById("debug-trace").replaceChildren(...traces.flat());
        const answer = await fetch(`/api/v1/flows/${encodeURIComponent(id)}/stats`);
        const nodes = answer.ok ? await answer.json() : [];
        document.querySelector("#node-stats tbody").replaceChildren(...nodes.map((n) => {
          const tr = document.createElement("tr");
          tr.dataset.node = n.node;
          const model = n.type === "model";
          const count = model ? n.model_calls : n.readings;
          const micro = count ? (n.busy_ns / count / 1000).toFixed(1) : "–";
          const extra = model ? `${n.model_rows} rows, ${n.model_timeouts} timeouts, ${n.model_fallbacks} fallbacks`
            : n.type === "subflow" ? `${n.rules.length} rules, ${n.raised} raised`
            : n.actions_delivered || n.actions_failed ? `${n.actions_delivered} ok, ${n.actions_failed} failed` : "";
          for (const v of [n.node, n.type, n.readings, n.errors, micro, extra]) {
            const td = document.createElement("td");
            td.textContent = String(v);
            tr.append(td);
          }
          if (n.last_error) tr.title = n.last_error;
          return tr;
        }));
        const alerts = (await (await fetch("/api/v1/alerts?status=active&status=cleared&limit=20")).json())
          .filter((a) => a.rule.startsWith(prefix));
        document.getElementById("debug-events").replaceChildren(...alerts.map((a) => {
          const li = document.createElement("li");
          li.textContent = `${a.status} ${a.device}: ${a.message}`;
          return li;
        }));
      } catch (error) {
        say(`Live debug paused: ${error}`, true);
      }
    }
    setTimeout(poll, 1000);
  }

  const initial = root.dataset.flow && root.dataset.flow !== "null" ? JSON.parse(root.dataset.flow) : null;
  if (initial) load(initial);
  poll();
  window.trellisFlowEditor = { editor, toFlow, load };
})();
