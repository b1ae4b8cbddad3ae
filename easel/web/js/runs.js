// Queueing runs and following them: WebSocket events, node states, previews, queue and gallery.

import { api, outputUrl } from "./api.js";
import { randomSeed } from "./widgets.js";
import { el } from "./dom.js";

const FINAL = new Set(["succeeded", "failed", "cancelled"]);

function filesOf(outputs) {
  const files = [];
  for (const ui of Object.values(outputs || {})) for (const f of (ui && ui.files) || []) files.push(f);
  return files;
}

export class Runner {
  constructor({ graph, canvas, toast, status, queueList, gallery, lightbox, openRun, name }) {
    Object.assign(this, { graph, canvas, toast, status, queueList, gallery, lightbox, openRun });
    this.name = name || (() => ""); // the workflow's name, kept in the run's `ui`
    this.prompts = new Map(); // run id -> its prompt text (a finished run's workflow is fixed)
    this.clientId = crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2);
    this.mine = new Set();
    this.early = new Map();
    this.shown = null; // the run whose states are drawn on the canvas
    this.retry = 500;
    this.galleryFiles = [];
    this.listeners = new Map(); // message type -> plugin functions
    this.executedHooks = [];
  }

  start() {
    this.connect();
    this.refresh();
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/api/events`);
    ws.addEventListener("open", () => { this.retry = 500; document.body.classList.remove("offline"); });
    ws.addEventListener("message", (e) => this.onEvent(JSON.parse(e.data)));
    ws.addEventListener("close", () => {
      document.body.classList.add("offline");
      setTimeout(() => this.connect(), this.retry);
      this.retry = Math.min(this.retry * 2, 8000);
    });
    this.ws = ws;
  }

  async queue() {
    const workflow = this.graph.toWorkflow();
    if (this.name()) workflow.ui.name = this.name();
    this.canvas.clearStates();
    try {
      const run = await api.submit(workflow, this.clientId);
      this.adopt(run.id);
      this.toast(run.position ? `Queued (${run.position} ahead)` : "Queued", "info");
      this.randomizeSeeds();
      this.refresh();
      return run.id;
    } catch (err) {
      this.showProblems(err);
      return null;
    }
  }

  showProblems(err) {
    if (!err.problems || !err.problems.length) { this.toast(err.message, "error"); return; }
    const general = [];
    for (const problem of err.problems) {
      if (problem.node && this.graph.nodes.has(problem.node)) {
        this.canvas.setState(problem.node, { state: "failed", message: problem.message, input: problem.input });
      } else {
        general.push(problem.message);
      }
    }
    const count = err.problems.length;
    this.toast(`${err.message}${general.length ? ": " + general.join("; ") : ` (${count} shown on the nodes)`}`, "error");
  }

  randomizeSeeds() {
    const flags = this.graph.extras.randomize || {};
    let changed = false;
    for (const [id, on] of Object.entries(flags)) {
      const node = this.graph.nodes.get(id);
      if (!on || !node) continue;
      const schema = this.graph.schema(node.type);
      let here = false;
      for (const [name, spec] of Object.entries(schema?.inputs || {})) {
        if (spec.widget === "seed" && !Array.isArray(node.inputs[name])) {
          node.inputs[name] = randomSeed(spec);
          here = true;
        }
      }
      if (here) { this.canvas.renderNode(id); changed = true; }
    }
    if (changed) this.graph.changed({ seeds: true });
  }

  /** A run queued from this page: show its events, including any that came before. */
  adopt(runId) {
    if (this.mine.has(runId)) return;
    this.mine.add(runId);
    const early = this.early.get(runId) || [];
    this.early.delete(runId);
    for (const m of early) this.onEvent(m);
  }

  /** Plugins: `fn(message)` for every WebSocket message of a type (their own events too). */
  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, []);
    this.listeners.get(type).push(fn);
  }

  /** Plugins: `fn(nodeId, ui, message)` when a node of the run on screen finished or was cached. */
  onNodeExecuted(fn) { this.executedHooks.push(fn); }

  notify(list, ...args) {
    for (const fn of list || []) {
      try { fn(...args); } catch (err) { console.error("plugin hook failed", err); }
    }
  }

  onEvent(m) {
    this.notify(this.listeners.get(m.type), m);
    if (m.type === "hello") { this.setCounts(m.queue); return; }
    if (m.type === "run_queued" || m.type === "run_status") this.refreshSoon();
    if (m.type === "run_queued" && m.client_id === this.clientId) { this.adopt(m.run_id); return; }
    if (!this.mine.has(m.run_id)) {
      // Events can arrive before the POST that queued the run has answered.
      if (!this.early.has(m.run_id)) this.early.set(m.run_id, []);
      const list = this.early.get(m.run_id);
      if (list.length < 500) list.push(m);
      if (this.early.size > 50) this.early.delete(this.early.keys().next().value);
      return;
    }
    if (m.type === "run_started") {
      this.shown = m.run_id;
      this.canvas.clearStates();
      for (const id of m.nodes || []) if (this.graph.nodes.has(id)) this.canvas.setState(id, { state: "pending" });
    }
    if (m.run_id !== this.shown) return;
    const id = m.node;
    const here = id && this.graph.nodes.has(id);
    switch (m.type) {
      case "node_started": if (here) this.canvas.setState(id, { state: "running", message: "", step: 0, total: 0 }); break;
      case "node_progress":
        if (here) this.canvas.setState(id, { state: "running", step: m.step, total: m.total, ...(m.preview ? { preview: m.preview } : {}) });
        break;
      case "node_cached":
        if (here) this.canvas.setState(id, { state: "cached", images: (m.ui && m.ui.files) || [] });
        this.notify(this.executedHooks, id, m.ui, m);
        break;
      case "node_finished":
        if (here) this.canvas.setState(id, { state: "executed", images: (m.ui && m.ui.files) || [] });
        this.notify(this.executedHooks, id, m.ui, m);
        break;
      case "node_failed": if (here) this.canvas.setState(id, { state: "failed", message: m.message, input: m.input }); break;
      case "node_skipped": if (here) this.canvas.setState(id, { state: "skipped", message: m.reason }); break;
      case "node_warning": this.toast(`${m.node}: ${m.message}`, "warn"); break;
      case "run_status":
        this.shownStatus = m.status;
        if (FINAL.has(m.status)) this.clearStale();
        if (m.status === "failed") this.toast(m.error?.message || "Run failed", "error");
        else if (m.status === "cancelled") this.toast("Run cancelled", "warn");
        else if (m.status === "succeeded") this.addToGallery(filesOf(m.outputs));
        break;
      default: break;
    }
  }

  /** A run that ended leaves no node "running" or "pending". */
  clearStale() {
    for (const [id, st] of this.canvas.states) {
      if (st.state === "running" || st.state === "pending") {
        this.canvas.setState(id, { state: null, step: 0, total: 0, preview: null });
      }
    }
  }

  /** Show a past run: its workflow (the caller asks about unsaved changes) and its images. */
  async open(runId) {
    let run;
    try { run = await api.run(runId); } catch (err) { this.toast(err.message, "error"); return; }
    if (!run.workflow || !this.openRun(run)) return;
    this.shown = run.id;
    for (const [id, ui] of Object.entries(run.outputs || {})) {
      if (this.graph.nodes.has(id)) this.canvas.setState(id, { state: "executed", images: ui?.files || [] });
    }
    for (const [id, entry] of Object.entries(run.nodes || {})) {
      if (!this.graph.nodes.has(id) || run.outputs?.[id]) continue;
      const state = { succeeded: "executed", executed: "executed", cached: "cached", failed: "failed" }[entry.status];
      if (state) this.canvas.setState(id, { state, message: entry.error?.message || entry.message || "" });
    }
  }

  setCounts(counts) {
    const waiting = (counts.queued || 0) + (counts.running || 0);
    this.status.textContent = waiting ? `${counts.running ? "running" : "idle"} · ${counts.queued} queued` : "idle";
    this.status.classList.toggle("busy", waiting > 0);
  }

  refreshSoon() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.refresh(), 150);
  }

  async refresh() {
    let page;
    try { page = await api.runs("?limit=40"); } catch { return; }
    this.setCounts(page.counts);
    this.queueList.replaceChildren(...page.runs.map((run) => this.runRow(run)));
    if (!this.galleryLoaded) {
      this.galleryLoaded = true;
      const files = [];
      for (const run of [...page.runs].reverse()) if (run.status === "succeeded") files.push(...filesOf(run.outputs));
      this.addToGallery(files);
    }
  }

  runRow(run) {
    const row = el("div", `run-row status-${run.status}`);
    row.dataset.id = run.id;
    const when = new Date((run.finished || run.started || run.created) * 1000);
    const files = filesOf(run.outputs);
    const thumb = el("span", "run-thumb");
    if (files.length) {
      const img = el("img");
      img.src = outputUrl(files[0]);
      img.alt = "";
      img.loading = "lazy";
      thumb.append(img);
    }
    const prompt = el("span", "run-prompt", this.prompts.get(run.id) ?? "");
    row.append(thumb, el("span", "dot"), el("span", "run-id", run.id.slice(0, 8)),
      el("span", "run-status", run.status), el("span", "run-time", when.toLocaleTimeString()), prompt);
    if (FINAL.has(run.status)) {
      row.classList.add("openable");
      row.title = "Open this run's workflow and images";
      row.addEventListener("click", (e) => { if (!e.target.closest("button")) this.open(run.id); });
      if (!this.prompts.has(run.id)) this.fetchPrompt(run.id, prompt);
    }
    if (!FINAL.has(run.status)) {
      const cancel = el("button", "small danger", "Cancel");
      cancel.addEventListener("click", async () => {
        try { await api.cancel(run.id); this.refresh(); } catch (err) { this.toast(err.message, "error"); }
      });
      row.append(cancel);
    }
    if (run.error?.message) row.title = run.error.message;
    return row;
  }

  /** The run's prompt: its longest text input (fetched once per run). */
  async fetchPrompt(runId, target) {
    this.prompts.set(runId, "");
    try {
      const run = await api.run(runId);
      let best = "";
      for (const node of Object.values(run.workflow?.nodes || {})) {
        for (const value of Object.values(node.inputs || {})) {
          if (typeof value === "string" && value.length > best.length && /\s/.test(value)) best = value;
        }
      }
      this.prompts.set(runId, best);
      target.textContent = best;
      target.title = best;
    } catch { /* the row stays without its prompt */ }
  }

  addToGallery(files) {
    for (const file of files) {
      if (this.galleryFiles.includes(file)) continue;
      this.galleryFiles.unshift(file);
      const item = el("button", "gallery-item");
      const img = el("img");
      img.src = outputUrl(file);
      img.alt = file;
      item.title = file;
      item.append(img);
      item.addEventListener("click", () => this.lightbox(file));
      this.gallery.prepend(item);
    }
    const empty = this.gallery.parentElement.querySelector(".gallery-empty");
    if (empty) empty.hidden = this.galleryFiles.length > 0;
  }
}
