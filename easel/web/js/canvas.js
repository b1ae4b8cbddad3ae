// The canvas: nodes as DOM, links as SVG, pan/zoom, selection, dragging nodes and links.

import { isLink, REROUTE } from "./graph.js";
import { makeWidget } from "./widgets.js";
import { outputUrl } from "./api.js";
import { el } from "./dom.js";

const TYPE_COLORS = {
  MODEL: "#b59cf0", CLIP: "#f2c94c", VAE: "#f07c7c", CONDITIONING: "#f5a25d",
  LATENT: "#f07ab8", IMAGE: "#5ab0f0", INT: "#7bd88f", FLOAT: "#4fd1c5",
  STRING: "#a3d977", BOOLEAN: "#9aa7b4", PRIOR: "#c39bd3", IMAGE_EMBEDS: "#e88ee8",
  UPSCALE_MODEL: "#8fa8ff", MASK: "#e6e6e6", CONTROL_NET: "#6bd3c3",
  SAMPLER: "#ecb4b4", SIGMAS: "#cdffcd", NOISE: "#b0b0b0", GUIDER: "#66ffff", "*": "#cfd6e4",
  CLIP_VISION: "#a8dadc", CLIP_VISION_OUTPUT: "#ad7452", STYLE_MODEL: "#c2ffae",
};

/** A socket type's colour for sockets and links (plugins: `editor.setSocketColor`). */
export function setTypeColor(type, css) { TYPE_COLORS[type] = css; }

export function typeColor(type) {
  if (TYPE_COLORS[type]) return TYPE_COLORS[type];
  let hash = 0;
  for (const ch of type) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  return `hsl(${hash % 360} 65% 65%)`;
}

const SVG = "http://www.w3.org/2000/svg";
const MIN_ZOOM = 0.05; // Fit shows a graph of thousands of nodes
const MAX_ZOOM = 2.5;
/** The smallest size a node can be dragged to (world units); its content's height is a floor too. */
export const MIN_NODE_SIZE = { width: 160, height: 60 };

export class Canvas {
  constructor(root, graph, { toast }) {
    this.root = root;
    this.graph = graph;
    this.toast = toast;
    this.world = root.querySelector("#world");
    this.svg = root.querySelector("#links");
    this.layer = root.querySelector("#nodes");
    this.groupLayer = root.querySelector("#groups");
    this.view = { x: 0, y: 0, zoom: 1 };
    this.selected = new Set();
    this.states = new Map(); // node id -> {state, message, input, step, total, preview, images}
    this.elements = new Map();
    this.drag = null;
    this.#listen();
  }

  // -- coordinates ---------------------------------------------------------------
  toWorld(clientX, clientY) {
    const rect = this.root.getBoundingClientRect();
    return { x: (clientX - rect.left - this.view.x) / this.view.zoom,
             y: (clientY - rect.top - this.view.y) / this.view.zoom };
  }

  center() {
    const rect = this.root.getBoundingClientRect();
    return this.toWorld(rect.left + rect.width / 2, rect.top + rect.height / 2);
  }

  setView(view) {
    this.view = { ...view, zoom: Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, view.zoom)) };
    this.world.style.transform = `translate(${this.view.x}px, ${this.view.y}px) scale(${this.view.zoom})`;
    this.root.style.setProperty("--grid", `${24 * this.view.zoom}px`);
    this.root.style.backgroundPosition = `${this.view.x}px ${this.view.y}px`;
    const indicator = this.root.querySelector("#zoom-indicator");
    if (indicator) indicator.textContent = `${Math.round(this.view.zoom * 100)}%`;
    this.root.dispatchEvent(new CustomEvent("viewchange"));
  }

  /** Zoom by `factor` around a point of the canvas (its middle by default). */
  zoomBy(factor, px, py) {
    const rect = this.root.getBoundingClientRect();
    const x = px ?? rect.width / 2, y = py ?? rect.height / 2;
    const zoom = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, this.view.zoom * factor));
    const k = zoom / this.view.zoom;
    this.setView({ x: x - (x - this.view.x) * k, y: y - (y - this.view.y) * k, zoom });
  }

  panBy(dx, dy) { this.setView({ ...this.view, x: this.view.x + dx, y: this.view.y + dy }); }

  fit() {
    if (!this.graph.nodes.size) { this.setView({ x: 40, y: 40, zoom: 1 }); return; }
    let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
    for (const node of this.graph.nodes.values()) {
      const element = this.elements.get(node.id);
      const w = element ? element.offsetWidth : 240;
      const h = element ? element.offsetHeight : 120;
      minX = Math.min(minX, node.x); minY = Math.min(minY, node.y);
      maxX = Math.max(maxX, node.x + w); maxY = Math.max(maxY, node.y + h);
    }
    const rect = this.root.getBoundingClientRect();
    const pad = 40;
    const zoom = Math.min(1, (rect.width - 2 * pad) / (maxX - minX), (rect.height - 2 * pad) / (maxY - minY));
    const z = Math.max(MIN_ZOOM, zoom);
    this.setView({ x: (rect.width - (maxX - minX) * z) / 2 - minX * z,
                   y: (rect.height - (maxY - minY) * z) / 2 - minY * z, zoom: z });
  }

  // -- drawing -------------------------------------------------------------------
  render() {
    this.layer.replaceChildren();
    this.elements.clear();
    for (const id of [...this.selected]) if (!this.graph.nodes.has(id)) this.selected.delete(id);
    for (const node of this.graph.nodes.values()) {
      const element = this.buildNode(node);
      this.elements.set(node.id, element);
      this.layer.append(element);
    }
    this.renderGroups();
    this.drawLinks();
  }

  renderGroups() {
    if (!this.groupLayer) return;
    this.groupLayer.replaceChildren(...this.graph.groups.map((group, index) => {
      const box = el("div", "group");
      box.dataset.index = index;
      Object.assign(box.style, { left: `${group.x}px`, top: `${group.y}px`,
                                 width: `${group.w}px`, height: `${group.h}px` });
      if (group.color) box.style.setProperty("--group", group.color);
      box.append(el("div", "group-title", group.title || "Group"), el("div", "group-resize"));
      return box;
    }));
  }

  /** Ids of the nodes inside a group's rectangle (their top-left corner is inside). */
  groupMembers(group) {
    return [...this.graph.nodes.values()].filter((n) => n.x >= group.x && n.y >= group.y &&
      n.x < group.x + group.w && n.y < group.y + group.h).map((n) => n.id);
  }

  /** The world rectangle around nodes, with room for a group's title. */
  boundsOf(ids, pad = 20) {
    let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
    for (const id of ids) {
      const node = this.graph.nodes.get(id);
      const element = this.elements.get(id);
      if (!node) continue;
      minX = Math.min(minX, node.x); minY = Math.min(minY, node.y);
      maxX = Math.max(maxX, node.x + (element?.offsetWidth || 240));
      maxY = Math.max(maxY, node.y + (element?.offsetHeight || 120));
    }
    return { x: minX - pad, y: minY - pad - 28, w: maxX - minX + 2 * pad, h: maxY - minY + 2 * pad + 28 };
  }

  renderNode(id) {
    const node = this.graph.nodes.get(id);
    const old = this.elements.get(id);
    if (!node || !old) return this.render();
    const element = this.buildNode(node);
    old.replaceWith(element);
    this.elements.set(id, element);
    this.drawLinks();
  }

  buildNode(node) {
    const schema = this.graph.schema(node.type);
    const element = el("div", "node");
    element.dataset.id = node.id;
    element.dataset.type = node.type;
    element.style.left = `${node.x}px`;
    element.style.top = `${node.y}px`;
    if (this.selected.has(node.id)) element.classList.add("selected");
    if (schema?.output_node) element.classList.add("output-node");
    if (node.mode) element.classList.add(`mode-${node.mode}`);
    const ui = (key) => this.graph.nodeUi(key, node.id);
    if (ui("collapsed")) element.classList.add("collapsed");
    if (ui("pinned")) element.classList.add("pinned");
    if (ui("colors")) element.style.setProperty("--node-color", ui("colors"));
    if (node.type === REROUTE) {
      element.classList.add("reroute");
      element.title = `${node.id} (Reroute)`;
    }
    const size = node.type === REROUTE ? null : ui("sizes");
    if (Array.isArray(size)) this.#applySize(element, size[0], size[1]);

    const header = el("div", "node-header");
    const title = el("span", "node-title", ui("titles") || schema?.display_name || node.type);
    if (ui("titles")) title.title = node.type;
    if (schema?.description) header.title = schema.description;
    header.append(title, el("span", "node-id", node.id), el("span", "node-badge"));
    if (node.mode) header.append(el("span", "node-mode", node.mode === "bypass" ? "bypassed" : "muted"));
    element.append(header);

    const body = el("div", "node-body");
    if (!schema) {
      body.append(el("div", "node-missing", `Unknown node type "${node.type}": is its plugin installed?`));
    } else {
      for (const [name, type] of Object.entries(schema.outputs)) {
        const row = el("div", "row out");
        row.append(el("span", "label", name), this.socket(node.id, name, type, "out"));
        body.append(row);
      }
      for (const [name, spec] of Object.entries(schema.inputs)) body.append(this.inputRow(node, name, spec));
    }
    element.append(body);
    element.append(el("div", "node-progress"), el("div", "node-message"), el("div", "node-media"));
    if (node.type !== REROUTE) {
      const grip = el("div", "node-resize");
      grip.title = "drag to resize";
      element.append(grip);
    }
    this.applyState(node.id, element);
    return element;
  }

  #applySize(element, width, height) {
    element.classList.add("sized");
    element.style.width = `${Math.max(MIN_NODE_SIZE.width, width)}px`;
    element.style.minHeight = `${Math.max(MIN_NODE_SIZE.height, height)}px`;
  }

  socket(nodeId, name, type, dir) {
    const socket = el("span", `socket ${dir}`);
    socket.dataset.node = nodeId;
    socket.dataset.name = name;
    socket.dataset.type = type;
    socket.dataset.dir = dir;
    socket.style.setProperty("--c", typeColor(type));
    socket.title = `${name}: ${type}`;
    return socket;
  }

  inputRow(node, name, spec) {
    const row = el("div", "row in");
    row.dataset.input = name;
    const value = node.inputs[name];
    const linked = isLink(value);
    row.append(this.socket(node.id, name, spec.type, "in"));
    if (linked) row.classList.add("linked");
    const label = el("span", "label", name + (spec.required ? "" : ""));
    if (spec.description) label.title = spec.description;
    row.append(label);
    if (spec.link_only) {
      row.classList.add("link-only");
      row.append(el("span", "type-tag", spec.type));
      return row;
    }
    if (linked) { // as ComfyUI: a linked value input shows no widget
      row.append(el("span", "linked-from", `← ${value[0]}.${value[1]}`));
      return row;
    }
    if (this.graph.isConverted(node.id, name)) { // "convert widget to input": the socket sets it
      row.classList.add("converted");
      const shown = value === undefined ? "" : JSON.stringify(value);
      const tag = el("span", "type-tag", spec.type);
      tag.title = `widget hidden (value ${shown || "unset"}): link a value, or use "Convert ${name} to widget"`;
      row.append(tag);
      return row;
    }
    const ctx = {
      toast: this.toast,
      editMask: (name, done) => this.root.dispatchEvent(new CustomEvent("editmask", { detail: { name, done } })),
      randomize: () => Boolean(this.graph.extras.randomize?.[node.id]),
      setRandomize: (on) => {
        this.graph.checkpoint();
        this.graph.extras.randomize = { ...(this.graph.extras.randomize || {}), [node.id]: on };
        this.graph.changed({ value: node.id });
      },
    };
    const widget = makeWidget(spec, value, (v) => {
      this.graph.checkpoint();
      this.graph.setValue(node.id, name, v);
    }, ctx);
    if (widget) {
      row.classList.add("has-widget");
      const holder = el("div", "widget");
      holder.append(widget);
      row.append(holder);
    }
    return row;
  }

  socketCenter(socket) {
    let rect = socket.getBoundingClientRect();
    if (!rect.width) { // a collapsed node: its links meet the header's edge
      const header = socket.closest(".node")?.querySelector(".node-header");
      if (header) {
        const h = header.getBoundingClientRect();
        rect = { left: socket.dataset.dir === "out" ? h.right - 4 : h.left - 4, top: h.top + h.height / 2 - 4,
                 width: 8, height: 8 };
      }
    }
    return this.toWorld(rect.left + rect.width / 2, rect.top + rect.height / 2);
  }

  findSocket(nodeId, name, dir) {
    const element = this.elements.get(nodeId);
    return element?.querySelector(`.socket.${dir}[data-name="${CSS.escape(name)}"]`);
  }

  /** Where a node's sockets are, relative to its top-left corner (world units): measured
   *  once per drawn node, so dragging never reads the layout. */
  #socketOffsets(id) {
    let offsets = this.offsets.get(id);
    if (offsets) return offsets;
    offsets = { in: {}, out: {} };
    const element = this.elements.get(id);
    const node = this.graph.nodes.get(id);
    if (element && node) {
      for (const socket of element.querySelectorAll(".socket")) {
        const p = this.socketCenter(socket);
        offsets[socket.dataset.dir][socket.dataset.name] = { x: p.x - node.x, y: p.y - node.y, type: socket.dataset.type };
      }
    }
    this.offsets.set(id, offsets);
    return offsets;
  }

  #endpoints(link) {
    const from = this.graph.nodes.get(link.from), to = this.graph.nodes.get(link.to);
    const a = from && this.#socketOffsets(link.from).out[link.output];
    const b = to && this.#socketOffsets(link.to).in[link.input];
    if (!a || !b) return null;
    return { a: { x: from.x + a.x, y: from.y + a.y }, b: { x: to.x + b.x, y: to.y + b.y }, type: a.type };
  }

  /** Redraw every link (after the graph or a node's layout changed). */
  drawLinks() {
    this.offsets = new Map();
    this.linkPaths = new Map(); // node id -> [{path, link}] for the links touching it
    const paths = [];
    for (const link of this.graph.links()) {
      const ends = this.#endpoints(link);
      if (!ends) continue;
      const path = this.curve(ends.a, ends.b);
      path.setAttribute("stroke", typeColor(ends.type));
      path.classList.add("link");
      path.dataset.from = link.from;
      path.dataset.to = link.to;
      path.dataset.input = link.input;
      paths.push(path);
      for (const id of [link.from, link.to]) {
        if (!this.linkPaths.has(id)) this.linkPaths.set(id, []);
        this.linkPaths.get(id).push({ path, link });
      }
    }
    this.tempPath = null;
    this.svg.replaceChildren(...paths);
    this.drawTempLink();
  }

  /** Only the links of nodes that moved (dragging: no layout reads, no new elements). */
  moveLinks(ids) {
    if (!this.linkPaths) { this.drawLinks(); return; }
    const done = new Set();
    for (const id of ids) {
      for (const entry of this.linkPaths.get(id) || []) {
        if (done.has(entry)) continue;
        done.add(entry);
        const ends = this.#endpoints(entry.link);
        if (ends) entry.path.setAttribute("d", this.#pathData(ends.a, ends.b));
      }
    }
  }

  /** The link being drawn by the user, if any. */
  drawTempLink() {
    const d = this.drag;
    if (!(d?.kind === "link" && d.end)) {
      this.tempPath?.remove();
      this.tempPath = null;
      return;
    }
    const [a, b] = d.fromOut ? [d.anchor, d.end] : [d.end, d.anchor];
    if (!this.tempPath) {
      this.tempPath = this.curve(a, b);
      this.tempPath.setAttribute("stroke", typeColor(d.type));
      this.tempPath.classList.add("link", "temp");
      this.svg.append(this.tempPath);
    } else {
      this.tempPath.setAttribute("d", this.#pathData(a, b));
    }
  }

  #pathData(a, b) {
    const d = Math.max(40, Math.abs(b.x - a.x) / 2);
    return `M ${a.x} ${a.y} C ${a.x + d} ${a.y}, ${b.x - d} ${b.y}, ${b.x} ${b.y}`;
  }

  curve(a, b) {
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", this.#pathData(a, b));
    return path;
  }

  // -- run states ----------------------------------------------------------------
  setState(id, patch) {
    this.states.set(id, { ...(this.states.get(id) || {}), ...patch });
    const element = this.elements.get(id);
    if (element) this.applyState(id, element);
  }

  clearStates() {
    this.states.clear();
    for (const [id, element] of this.elements) this.applyState(id, element);
  }

  applyState(id, element) {
    const st = this.states.get(id) || {};
    for (const cls of [...element.classList]) if (cls.startsWith("state-")) element.classList.remove(cls);
    if (st.state) element.classList.add(`state-${st.state}`);
    element.querySelector(".node-badge").textContent = st.state && st.state !== "pending" ? st.state : "";
    const bar = element.querySelector(".node-progress");
    const fraction = st.total ? st.step / st.total : 0;
    bar.style.setProperty("--p", `${Math.round(fraction * 100)}%`);
    bar.hidden = !(st.state === "running" && st.total);
    bar.dataset.label = st.total ? `${st.step} / ${st.total}` : "";
    const message = element.querySelector(".node-message");
    message.textContent = st.message || "";
    message.hidden = !st.message;
    for (const row of element.querySelectorAll(".row.in")) {
      row.classList.toggle("invalid", Boolean(st.message && st.input === row.dataset.input));
    }
    const media = element.querySelector(".node-media");
    const images = st.images || [];
    const running = st.state === "running" && st.preview;
    const want = running ? [st.preview] : images.map(outputUrl);
    const have = [...media.querySelectorAll("img")].map((img) => img.getAttribute("src"));
    if (JSON.stringify(want) !== JSON.stringify(have)) {
      media.replaceChildren(...want.map((src) => {
        const img = el("img");
        img.src = src;
        img.alt = "output";
        img.className = running ? "preview" : "output";
        if (!running) {
          const file = images[want.indexOf(src)];
          img.title = `${file}: click to enlarge`;
          img.addEventListener("click", () => this.root.dispatchEvent(
            new CustomEvent("openimage", { detail: { file } })));
        }
        img.addEventListener("load", () => this.drawLinks());
        return img;
      }));
    }
    media.hidden = !want.length;
  }

  // -- selection -----------------------------------------------------------------
  select(ids, add = false) {
    if (!add) this.selected.clear();
    for (const id of ids) this.selected.add(id);
    for (const [id, element] of this.elements) element.classList.toggle("selected", this.selected.has(id));
  }

  // -- input handling ------------------------------------------------------------
  #listen() {
    this.root.addEventListener("pointerdown", (e) => this.#down(e));
    this.root.addEventListener("dblclick", (e) => {
      if (e.target.closest(".node, input, textarea, select, button")) return;
      this.root.dispatchEvent(new CustomEvent("searchat", { detail: { clientX: e.clientX, clientY: e.clientY } }));
    });
    window.addEventListener("pointermove", (e) => this.#move(e));
    window.addEventListener("pointerup", (e) => this.#up(e));
    this.root.addEventListener("wheel", (e) => {
      if (e.target.closest("textarea, select") && !e.ctrlKey) return;
      e.preventDefault();
      const rect = this.root.getBoundingClientRect();
      const px = e.clientX - rect.left;
      const py = e.clientY - rect.top;
      const zoom = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, this.view.zoom * Math.exp(-e.deltaY * 0.0015)));
      const k = zoom / this.view.zoom;
      this.setView({ x: px - (px - this.view.x) * k, y: py - (py - this.view.y) * k, zoom });
    }, { passive: false });
  }

  #down(e) {
    const target = e.target;
    if (target.closest("input, textarea, select, button, label, .node-media img")) return;
    // preventDefault below keeps focus where it was: move it here so shortcuts apply.
    this.root.focus({ preventScroll: true });
    const socket = target.closest(".socket");
    if (socket && e.button === 0) return this.#startLink(e, socket);
    const groupEl = target.closest(".group");
    if (groupEl && e.button === 0 && !target.closest(".node")) {
      const group = this.graph.groups[Number(groupEl.dataset.index)];
      if (target.closest(".group-resize")) {
        this.drag = { kind: "group-resize", group, startX: e.clientX, startY: e.clientY,
                      start: { w: group.w, h: group.h }, element: groupEl, moved: false };
        e.preventDefault();
        return;
      }
      if (target.closest(".group-title")) {
        const members = this.groupMembers(group);
        const starts = new Map(members.map((id) => [id, { x: this.graph.nodes.get(id).x, y: this.graph.nodes.get(id).y }]));
        this.drag = { kind: "nodes", startX: e.clientX, startY: e.clientY, starts, moved: false,
                      group: { group, x: group.x, y: group.y, element: groupEl } };
        e.preventDefault();
        return;
      }
    }
    const grip = target.closest(".node-resize");
    if (grip && e.button === 0) {
      const element = grip.closest(".node");
      this.drag = { kind: "node-resize", id: element.dataset.id, element, startX: e.clientX, startY: e.clientY,
                    start: { w: element.offsetWidth, h: element.offsetHeight }, moved: false };
      e.preventDefault();
      return;
    }
    const header = target.closest(".node-header, .node");
    const nodeEl = target.closest(".node");
    if (nodeEl && e.button === 0 && header) {
      const id = nodeEl.dataset.id;
      if (e.shiftKey || e.ctrlKey || e.metaKey) {
        if (this.selected.has(id)) { this.selected.delete(id); this.select([], true); return; }
        this.select([id], true);
      } else if (!this.selected.has(id)) {
        this.select([id]);
      }
      const starts = new Map([...this.selected].filter((sid) => !this.graph.nodeUi("pinned", sid))
        .map((sid) => {
          const n = this.graph.nodes.get(sid);
          return [sid, { x: n.x, y: n.y }];
        }));
      this.drag = { kind: "nodes", startX: e.clientX, startY: e.clientY, starts, moved: false };
      e.preventDefault();
      return;
    }
    if (e.button === 1 || (e.button === 0 && !e.shiftKey)) {
      this.drag = { kind: "pan", startX: e.clientX, startY: e.clientY, view: { ...this.view }, moved: false };
      this.root.classList.add("panning");
      e.preventDefault();
    } else if (e.button === 0 && e.shiftKey) {
      const start = this.toWorld(e.clientX, e.clientY);
      const box = el("div", "select-box");
      this.world.append(box);
      this.drag = { kind: "box", start, box };
      e.preventDefault();
    }
  }

  #startLink(e, socket) {
    e.preventDefault();
    const nodeId = socket.dataset.node;
    const name = socket.dataset.name;
    if (socket.dataset.dir === "out") {
      this.drag = { kind: "link", fromOut: true, node: nodeId, name, type: socket.dataset.type,
                    anchor: this.socketCenter(socket), end: null };
    } else {
      const value = this.graph.nodes.get(nodeId)?.inputs[name];
      if (isLink(value)) {
        // Pick up an existing link by its end: drop it elsewhere or nowhere to remove it.
        const source = this.findSocket(value[0], value[1], "out");
        this.graph.checkpoint();
        this.graph.disconnect(nodeId, name);
        this.drag = { kind: "link", fromOut: true, node: value[0], name: value[1],
                      type: source?.dataset.type || socket.dataset.type,
                      anchor: source ? this.socketCenter(source) : this.toWorld(e.clientX, e.clientY),
                      end: this.toWorld(e.clientX, e.clientY), detached: true };
      } else {
        this.drag = { kind: "link", fromOut: false, node: nodeId, name, type: socket.dataset.type,
                      anchor: this.socketCenter(socket), end: null };
      }
    }
    this.root.classList.add("linking");
    this.#markCompatible();
  }

  #markCompatible() {
    const d = this.drag;
    for (const socket of this.layer.querySelectorAll(".socket")) {
      let ok = false;
      if (d.fromOut && socket.dataset.dir === "in") {
        ok = !this.graph.linkProblem(d.node, d.name, socket.dataset.node, socket.dataset.name);
      } else if (!d.fromOut && socket.dataset.dir === "out") {
        ok = !this.graph.linkProblem(socket.dataset.node, socket.dataset.name, d.node, d.name);
      }
      socket.classList.toggle("compatible", ok);
    }
  }

  #move(e) {
    const d = this.drag;
    if (!d) return;
    if (d.kind === "pan") {
      const dx = e.clientX - d.startX;
      const dy = e.clientY - d.startY;
      if (Math.abs(dx) + Math.abs(dy) > 2) d.moved = true;
      this.setView({ ...d.view, x: d.view.x + dx, y: d.view.y + dy });
    } else if (d.kind === "nodes") {
      const dx = (e.clientX - d.startX) / this.view.zoom;
      const dy = (e.clientY - d.startY) / this.view.zoom;
      if (!d.moved && Math.abs(dx) + Math.abs(dy) < 2) return;
      if (!d.moved) { this.graph.checkpoint(); d.moved = true; }
      for (const [id, start] of d.starts) {
        const node = this.graph.nodes.get(id);
        node.x = Math.round(start.x + dx);
        node.y = Math.round(start.y + dy);
        const element = this.elements.get(id);
        element.style.left = `${node.x}px`;
        element.style.top = `${node.y}px`;
      }
      if (d.group) {
        d.group.group.x = Math.round(d.group.x + dx);
        d.group.group.y = Math.round(d.group.y + dy);
        d.group.element.style.left = `${d.group.group.x}px`;
        d.group.element.style.top = `${d.group.group.y}px`;
      }
      this.moveLinks(d.starts.keys());
    } else if (d.kind === "group-resize") {
      if (!d.moved) { this.graph.checkpoint(); d.moved = true; }
      d.group.w = Math.max(120, Math.round(d.start.w + (e.clientX - d.startX) / this.view.zoom));
      d.group.h = Math.max(60, Math.round(d.start.h + (e.clientY - d.startY) / this.view.zoom));
      Object.assign(d.element.style, { width: `${d.group.w}px`, height: `${d.group.h}px` });
    } else if (d.kind === "node-resize") {
      if (!d.moved) { this.graph.checkpoint(); d.moved = true; }
      d.size = [Math.max(MIN_NODE_SIZE.width, Math.round(d.start.w + (e.clientX - d.startX) / this.view.zoom)),
                Math.max(MIN_NODE_SIZE.height, Math.round(d.start.h + (e.clientY - d.startY) / this.view.zoom))];
      this.#applySize(d.element, ...d.size);
      this.offsets?.delete(d.id); // its output sockets moved with its right edge
      this.moveLinks([d.id]);
    } else if (d.kind === "link") {
      d.end = this.toWorld(e.clientX, e.clientY);
      this.drawTempLink();
    } else if (d.kind === "box") {
      const p = this.toWorld(e.clientX, e.clientY);
      const x = Math.min(p.x, d.start.x), y = Math.min(p.y, d.start.y);
      Object.assign(d.box.style, { left: `${x}px`, top: `${y}px`,
        width: `${Math.abs(p.x - d.start.x)}px`, height: `${Math.abs(p.y - d.start.y)}px` });
      d.rect = { x, y, w: Math.abs(p.x - d.start.x), h: Math.abs(p.y - d.start.y) };
    }
  }

  #up(e) {
    const d = this.drag;
    if (!d) return;
    this.drag = null;
    this.root.classList.remove("panning", "linking");
    if (d.kind === "pan" && !d.moved) this.select([]);
    if (d.kind === "nodes" && d.moved) this.graph.changed({ moved: [...d.starts.keys()] });
    if (d.kind === "group-resize" && d.moved) this.graph.changed({ moved: [] });
    if (d.kind === "node-resize" && d.size) this.graph.setNodeUi("sizes", [d.id], d.size);
    if (d.kind === "box") {
      d.box.remove();
      if (d.rect) {
        const hit = [...this.graph.nodes.values()].filter((n) => {
          const element = this.elements.get(n.id);
          const w = element.offsetWidth, h = element.offsetHeight;
          return n.x < d.rect.x + d.rect.w && n.x + w > d.rect.x && n.y < d.rect.y + d.rect.h && n.y + h > d.rect.y;
        }).map((n) => n.id);
        this.select(hit, true);
      }
    }
    if (d.kind === "link") {
      for (const socket of this.layer.querySelectorAll(".socket.compatible")) socket.classList.remove("compatible");
      const hit = document.elementFromPoint(e.clientX, e.clientY);
      const socket = hit?.closest(".socket") || hit?.closest(".row")?.querySelector(".socket");
      if (socket) this.#finishLink(d, socket);
      else if (hit && this.root.contains(hit) && !hit.closest(".node")) {
        // Dropped on empty space: offer the nodes that can take this link (main.js).
        this.root.dispatchEvent(new CustomEvent("linkdrop", { detail: {
          clientX: e.clientX, clientY: e.clientY,
          filter: { dir: d.fromOut ? "out" : "in", type: d.type, node: d.node, name: d.name } } }));
      }
      this.drawLinks();
    }
  }

  #finishLink(d, socket) {
    let from, output, to, input;
    if (d.fromOut && socket.dataset.dir === "in") {
      [from, output, to, input] = [d.node, d.name, socket.dataset.node, socket.dataset.name];
    } else if (!d.fromOut && socket.dataset.dir === "out") {
      [from, output, to, input] = [socket.dataset.node, socket.dataset.name, d.node, d.name];
    } else {
      return;
    }
    const problem = this.graph.linkProblem(from, output, to, input);
    if (problem) {
      this.toast(`Cannot connect: ${problem}`, "error");
      socket.classList.add("refused");
      setTimeout(() => socket.classList.remove("refused"), 900);
      return;
    }
    if (!d.detached) this.graph.checkpoint();
    this.graph.connect(from, output, to, input);
  }
}
