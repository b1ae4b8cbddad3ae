// The workflow being edited: nodes, links, values, positions, with undo/redo snapshots.

export const ANY = "*";

/** Whether an output of type `from` may feed an input of type `to` (same rule as the engine). */
export function compatible(from, to) {
  return from === ANY || to === ANY || from === to || (from === "INT" && to === "FLOAT");
}

export function isLink(value) {
  return Array.isArray(value) && value.length === 2 &&
    typeof value[0] === "string" && typeof value[1] === "string";
}

/** The value a new node's input starts with, from its schema. */
export function initialValue(spec) {
  if (spec.link_only) return undefined;
  if ("default" in spec && spec.default !== null) return spec.default;
  if (spec.choices && spec.choices.length) return spec.choices[0];
  if (!spec.required) return undefined;
  switch (spec.type) {
    case "INT": case "FLOAT": return spec.minimum ?? 0;
    case "BOOLEAN": return false;
    case "STRING": return "";
    default: return undefined;
  }
}

const HISTORY_LIMIT = 200;
/** Per-node editor data kept in the workflow's `ui`: `{key: {nodeId: value}}`. */
/** `sizes`: [width, height] set by dragging the corner; `converted`: the value inputs whose
 *  widget is hidden (set through the socket, as ComfyUI's "convert widget to input"). */
export const NODE_UI = ["titles", "colors", "collapsed", "pinned", "sizes", "converted"];
export const REROUTE = "Reroute";
export const MODES = ["bypass", "mute"];

export class Graph extends EventTarget {
  constructor(schemas) {
    super();
    this.schemas = schemas;
    this.nodes = new Map(); // id -> {id, type, x, y, inputs: {name: literal | [id, output]}}
    this.extras = {}; // other `ui` data to keep: randomize flags, titles, view
    this.undoStack = [];
    this.redoStack = [];
  }

  schema(type) { return this.schemas[type]; }

  // -- history -------------------------------------------------------------------
  snapshot() { return JSON.stringify(this.toWorkflow()); }

  /** Call before a change: the state now becomes one undo step. */
  checkpoint() {
    this.undoStack.push(this.snapshot());
    if (this.undoStack.length > HISTORY_LIMIT) this.undoStack.shift();
    this.redoStack = [];
  }

  undo() { return this.#travel(this.undoStack, this.redoStack); }
  redo() { return this.#travel(this.redoStack, this.undoStack); }

  #travel(from, to) {
    if (!from.length) return false;
    to.push(this.snapshot());
    this.load(JSON.parse(from.pop()), { keepHistory: true });
    return true;
  }

  changed(detail = {}) { this.dispatchEvent(new CustomEvent("change", { detail })); }

  // -- nodes ---------------------------------------------------------------------
  newId(type) {
    const base = type.replace(/[^A-Za-z0-9]/g, "").toLowerCase() || "node";
    if (!this.nodes.has(base)) return base;
    for (let n = 2; ; n++) if (!this.nodes.has(`${base}${n}`)) return `${base}${n}`;
  }

  addNode(type, x, y, inputs = null) {
    const schema = this.schema(type);
    const node = { id: this.newId(type), type, x: Math.round(x), y: Math.round(y), inputs: {} };
    if (schema) {
      for (const [name, spec] of Object.entries(schema.inputs)) {
        const value = initialValue(spec);
        if (value !== undefined) node.inputs[name] = value;
      }
      if (Object.values(schema.inputs).some((s) => s.widget === "seed")) {
        this.extras.randomize = { ...(this.extras.randomize || {}), [node.id]: true };
      }
    }
    if (inputs) Object.assign(node.inputs, inputs);
    this.nodes.set(node.id, node);
    this.changed({ added: node.id });
    return node;
  }

  removeNodes(ids) {
    const gone = new Set(ids);
    for (const id of gone) this.nodes.delete(id);
    for (const node of this.nodes.values()) {
      for (const [name, value] of Object.entries(node.inputs)) {
        if (isLink(value) && gone.has(value[0])) this.#unlink(node, name);
      }
    }
    for (const key of ["randomize", ...NODE_UI]) {
      if (this.extras[key]) for (const id of gone) delete this.extras[key][id];
    }
    this.changed({ removed: [...gone] });
  }

  #unlink(node, name) {
    const spec = this.schema(node.type)?.inputs[name];
    const value = spec ? initialValue(spec) : undefined;
    if (value === undefined) delete node.inputs[name];
    else node.inputs[name] = value;
  }

  // -- links ---------------------------------------------------------------------
  outputType(nodeId, output) {
    const node = this.nodes.get(nodeId);
    return node ? this.schema(node.type)?.outputs[output] : undefined;
  }

  /** Why linking `from.output` into `to.input` is refused, or null if it is fine. */
  linkProblem(fromId, output, toId, input) {
    const source = this.nodes.get(fromId);
    const target = this.nodes.get(toId);
    if (!source || !target) return "unknown node";
    if (fromId === toId) return "a node cannot feed itself";
    const outType = this.schema(source.type)?.outputs[output];
    const inType = this.schema(target.type)?.inputs[input]?.type;
    if (!outType || !inType) return "unknown socket";
    if (!compatible(outType, inType)) {
      return `${target.type}.${input} takes ${inType}, not ${outType} (from ${source.type}.${output})`;
    }
    if (this.#reaches(toId, fromId)) return "that link would make a cycle";
    return null;
  }

  #reaches(startId, goalId) {
    const seen = new Set();
    const stack = [startId];
    while (stack.length) {
      const id = stack.pop();
      if (id === goalId) return true;
      if (seen.has(id)) continue;
      seen.add(id);
      for (const node of this.nodes.values()) {
        if (Object.values(node.inputs).some((v) => isLink(v) && v[0] === id)) stack.push(node.id);
      }
    }
    return false;
  }

  connect(fromId, output, toId, input) {
    const problem = this.linkProblem(fromId, output, toId, input);
    if (problem) return problem;
    this.nodes.get(toId).inputs[input] = [fromId, output];
    this.changed({ linked: toId });
    return null;
  }

  disconnect(nodeId, input) {
    const node = this.nodes.get(nodeId);
    if (!node || !isLink(node.inputs[input])) return;
    this.#unlink(node, input);
    this.changed({ unlinked: nodeId });
  }

  links() {
    const out = [];
    for (const node of this.nodes.values()) {
      for (const [input, value] of Object.entries(node.inputs)) {
        if (isLink(value) && this.nodes.has(value[0])) {
          out.push({ from: value[0], output: value[1], to: node.id, input });
        }
      }
    }
    return out;
  }

  setValue(nodeId, input, value) {
    const node = this.nodes.get(nodeId);
    if (!node) return;
    node.inputs[input] = value;
    this.changed({ value: nodeId, input });
  }

  // -- modes and per-node ui data ----------------------------------------------------
  /** Set (or, when it is already `mode`, clear) bypass/mute on nodes. */
  toggleMode(ids, mode) {
    const nodes = ids.map((id) => this.nodes.get(id)).filter(Boolean);
    if (!nodes.length) return;
    const on = !nodes.every((n) => n.mode === mode);
    for (const node of nodes) {
      if (on) node.mode = mode;
      else delete node.mode;
    }
    this.changed({ mode: ids });
  }

  /** Per-node ui data (`key` in NODE_UI); a null/false/"" value removes it. */
  nodeUi(key, id) { return this.extras[key]?.[id]; }

  setNodeUi(key, ids, value) {
    const table = { ...(this.extras[key] || {}) };
    for (const id of ids) {
      if (value === null || value === undefined || value === false || value === "") delete table[id];
      else table[id] = value;
    }
    if (Object.keys(table).length) this.extras[key] = table;
    else delete this.extras[key];
    this.changed({ ui: key, ids });
  }

  /** Whether `input` of a node shows its widget (hidden when converted to an input). */
  isConverted(id, input) { return (this.nodeUi("converted", id) || []).includes(input); }

  /** Convert a value input's widget to an input socket only, or back to a widget. */
  toggleConverted(id, input) {
    const names = new Set(this.nodeUi("converted", id) || []);
    if (names.has(input)) names.delete(input);
    else names.add(input);
    this.setNodeUi("converted", [id], names.size ? [...names] : null);
  }

  /** Put a Reroute node on the link into `toId.input`, at (x, y); returns its id. */
  insertReroute(toId, input, x, y) {
    const value = this.nodes.get(toId)?.inputs[input];
    if (!isLink(value) || !this.schema(REROUTE)) return null;
    const reroute = { id: this.newId(REROUTE), type: REROUTE, x: Math.round(x), y: Math.round(y),
                      inputs: { input: value } };
    this.nodes.set(reroute.id, reroute);
    this.nodes.get(toId).inputs[input] = [reroute.id, "output"];
    this.changed({ added: reroute.id, linked: toId });
    return reroute.id;
  }

  // -- groups: {title, color, x, y, w, h} in ui.groups -------------------------------
  get groups() { return this.extras.groups || []; }

  addGroup(group) {
    this.extras.groups = [...this.groups, { title: "Group", color: null, ...group }];
    this.changed({ group: this.groups.length - 1 });
    return this.groups.length - 1;
  }

  removeGroup(index) {
    this.groups.splice(index, 1);
    if (!this.groups.length) delete this.extras.groups;
    this.changed({ group: index });
  }

  // -- copy and paste ------------------------------------------------------------
  copy(ids) {
    const picked = new Set(ids);
    const nodes = [...picked].map((id) => this.nodes.get(id)).filter(Boolean)
      .map((n) => JSON.parse(JSON.stringify(n)));
    return { nodes };
  }

  /** Add copies (links between copied nodes kept, links from outside too unless
   *  `keepOutside` is false); returns ids. */
  paste(clip, dx = 30, dy = 30, { keepOutside = true } = {}) {
    const rename = new Map();
    const added = [];
    for (const node of clip.nodes) {
      const id = this.newId(node.type);
      rename.set(node.id, id);
      const copy = { ...node, id, x: node.x + dx, y: node.y + dy, inputs: { ...node.inputs } };
      this.nodes.set(id, copy);
      added.push(copy);
    }
    for (const node of added) {
      for (const [name, value] of Object.entries(node.inputs)) {
        if (!isLink(value)) continue;
        if (rename.has(value[0])) node.inputs[name] = [rename.get(value[0]), value[1]];
        else if (!keepOutside || !this.nodes.has(value[0])) this.#unlink(node, name);
      }
    }
    this.changed({ pasted: added.map((n) => n.id) });
    return added.map((n) => n.id);
  }

  // -- the workflow format -------------------------------------------------------
  toWorkflow() {
    const nodes = {};
    const positions = {};
    for (const node of this.nodes.values()) {
      nodes[node.id] = { type: node.type, inputs: { ...node.inputs } };
      if (node.mode) nodes[node.id].mode = node.mode;
      positions[node.id] = [node.x, node.y];
    }
    return { format: "easel.workflow", version: 1, nodes, ui: { ...this.extras, positions } };
  }

  load(workflow, { keepHistory = false } = {}) {
    if (!keepHistory && this.nodes.size) this.checkpoint();
    const ui = workflow.ui || {};
    const positions = ui.positions || {};
    this.nodes.clear();
    const { positions: _, ...extras } = ui;
    this.extras = extras;
    let column = 0;
    for (const [id, spec] of Object.entries(workflow.nodes || {})) {
      const at = positions[id] || [40 + 280 * column, 80 + 40 * (column % 3)];
      column += 1;
      const node = { id, type: spec.type, x: at[0], y: at[1], inputs: { ...(spec.inputs || {}) } };
      if (MODES.includes(spec.mode)) node.mode = spec.mode;
      this.nodes.set(id, node);
    }
    this.changed({ loaded: true });
  }
}
