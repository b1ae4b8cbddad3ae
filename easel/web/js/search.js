// The node search at the pointer (double-click, `/`, or a link dropped on empty space):
// fuzzy ranking by name first, then aliases (ComfyUI class names), then description.

import { compatible } from "./graph.js";
import { el } from "./dom.js";

const MAX_RESULTS = 150;

/** How well `text` contains the letters of `query` in order (0: not at all), fewer gaps first. */
function subsequence(text, query) {
  let at = -1, gaps = 0;
  for (const ch of query) {
    const next = text.indexOf(ch, at + 1);
    if (next < 0) return 0;
    if (at >= 0 && next !== at + 1) gaps += 1;
    at = next;
  }
  return Math.max(1, 100 - gaps * 10 - (text.length - query.length));
}

/** A score for one text against the query: exact > prefix > word start > substring > fuzzy. */
function textScore(text, query) {
  if (!text) return 0;
  const t = text.toLowerCase();
  if (t === query) return 1000;
  if (t.startsWith(query)) return 900 - (t.length - query.length);
  const at = t.indexOf(query);
  if (at >= 0) return (/[^a-z0-9]/.test(t[at - 1] || "") || text[at] !== t[at] ? 750 : 650) - at;
  return subsequence(t, query.replace(/\s+/g, "")) * 3;
}

/** The score of a node type for `query` (0: no match); `aliases` lists its other names. */
export function score(schema, query, aliases = []) {
  const q = query.trim().toLowerCase();
  if (!q) return 1;
  const name = Math.max(textScore(schema.type, q), textScore(schema.display_name, q));
  if (name >= 300) return 3000 + name;
  const alias = Math.max(0, ...aliases.map((a) => textScore(a, q)));
  if (alias >= 300) return 2000 + alias;
  const words = q.split(/\s+/).filter(Boolean);
  const hay = `${schema.description || ""} ${schema.category || ""} ${schema.plugin || ""}`.toLowerCase();
  if (words.every((w) => hay.includes(w))) return 1000 + (name || alias) / 10;
  return Math.max(name, alias);
}

/** The input (or output) of `schema` a link of `type` can connect to, or null. */
export function linkSlot(schema, filter) {
  if (!filter) return null;
  if (filter.dir === "out") { // a link leaving an output: the new node takes it on an input
    for (const [name, spec] of Object.entries(schema.inputs)) if (spec.type === filter.type) return name;
    for (const [name, spec] of Object.entries(schema.inputs)) if (compatible(filter.type, spec.type)) return name;
    return null;
  }
  for (const [name, type] of Object.entries(schema.outputs)) if (type === filter.type) return name;
  for (const [name, type] of Object.entries(schema.outputs)) if (compatible(type, filter.type)) return name;
  return null;
}

/** Node types ranked for `query`, keeping those a link `filter` ({dir, type}) can connect to. */
export function rank(schemas, query, aliasesOf, filter = null) {
  const hits = [];
  for (const schema of Object.values(schemas)) {
    if (filter && !linkSlot(schema, filter)) continue;
    const s = score(schema, query, aliasesOf.get(schema.type) || []);
    if (s > 0) hits.push([s, schema]);
  }
  hits.sort((a, b) => b[0] - a[0] || a[1].type.localeCompare(b[1].type));
  return hits.slice(0, MAX_RESULTS).map(([, schema]) => schema);
}

export class NodeSearch {
  constructor(schemas, { onPick }) {
    this.schemas = schemas;
    this.onPick = onPick; // (type, clientX, clientY, filter) => void
    this.aliasesOf = new Map(); // easel type -> [ComfyUI names]
    this.box = el("div", "node-search");
    this.box.hidden = true;
    this.input = el("input");
    this.input.type = "search";
    this.input.placeholder = "Search nodes";
    this.input.spellcheck = false;
    this.input.setAttribute("aria-label", "Search nodes to add");
    this.list = el("div", "node-search-list");
    this.list.setAttribute("role", "listbox");
    this.box.append(this.input, this.list);
    document.body.append(this.box);
    this.input.addEventListener("input", () => this.render());
    this.input.addEventListener("keydown", (e) => this.#key(e));
    window.addEventListener("pointerdown", (e) => { if (!this.box.contains(e.target)) this.close(); });
  }

  /** `{ComfyName: EaselType}` from /api/nodes/aliases. */
  setAliases(table) {
    this.aliasesOf.clear();
    for (const [alias, type] of Object.entries(table || {})) {
      if (!this.aliasesOf.has(type)) this.aliasesOf.set(type, []);
      this.aliasesOf.get(type).push(alias);
    }
  }

  get isOpen() { return !this.box.hidden; }

  open(clientX, clientY, filter = null) {
    this.at = { x: clientX, y: clientY };
    this.filter = filter;
    this.input.value = "";
    this.box.hidden = false;
    const w = 320, h = 360;
    this.box.style.left = `${Math.max(4, Math.min(clientX, window.innerWidth - w - 4))}px`;
    this.box.style.top = `${Math.max(4, Math.min(clientY, window.innerHeight - h - 4))}px`;
    this.box.classList.toggle("filtered", Boolean(filter));
    this.box.dataset.filter = filter ? `${filter.dir}:${filter.type}` : "";
    this.render();
    this.input.focus();
  }

  close() {
    if (this.box.hidden) return;
    this.box.hidden = true;
    const cancelled = this.filter;
    this.filter = null;
    if (cancelled && this.onCancel) this.onCancel();
  }

  render() {
    this.hits = rank(this.schemas, this.input.value, this.aliasesOf, this.filter);
    this.active = 0;
    this.list.replaceChildren(...this.hits.map((schema, i) => {
      const item = el("div", "node-search-item");
      item.dataset.type = schema.type;
      item.setAttribute("role", "option");
      item.append(el("span", "name", schema.display_name || schema.type));
      const aliases = this.aliasesOf.get(schema.type);
      if (aliases?.length) item.append(el("span", "alias", aliases.slice(0, 2).join(", ")));
      item.append(el("span", "hint", (schema.description || "").split("\n")[0]));
      if (schema.plugin && schema.plugin !== "easel") item.append(el("span", "plugin", schema.plugin));
      item.addEventListener("pointerdown", (e) => { e.preventDefault(); this.pick(i); });
      item.addEventListener("pointermove", () => this.highlight(i));
      return item;
    }));
    if (!this.hits.length) this.list.append(el("p", "node-search-empty", "No node matches."));
    this.highlight(0);
  }

  highlight(i) {
    this.active = i;
    [...this.list.children].forEach((item, k) => {
      item.classList.toggle("active", k === i);
      item.setAttribute?.("aria-selected", String(k === i));
    });
    this.list.children[i]?.scrollIntoView?.({ block: "nearest" });
  }

  pick(i) {
    const schema = this.hits?.[i];
    if (!schema) return;
    const { at, filter } = this;
    this.filter = null; // a pick is not a cancel
    this.box.hidden = true;
    this.onPick(schema.type, at.x, at.y, filter);
  }

  #key(e) {
    const n = this.hits?.length || 0;
    if (e.key === "ArrowDown") { e.preventDefault(); if (n) this.highlight((this.active + 1) % n); }
    else if (e.key === "ArrowUp") { e.preventDefault(); if (n) this.highlight((this.active - 1 + n) % n); }
    else if (e.key === "Enter") { e.preventDefault(); e.stopPropagation(); this.pick(this.active); }
    else if (e.key === "Escape") { e.preventDefault(); this.close(); }
  }
}
