// The node palette: every node type from /api/nodes, grouped by category, searchable.

import { el } from "./dom.js";
import { rank } from "./search.js";

/** Whether a node type matches every word of the query (name, category, description, plugin). */
export function matches(schema, query) {
  const hay = `${schema.type} ${schema.display_name || ""} ${schema.category} ${schema.description} ${schema.plugin}`.toLowerCase();
  return query.toLowerCase().split(/\s+/).filter(Boolean).every((word) => hay.includes(word));
}

export class Palette {
  constructor(root, schemas, { onAdd }) {
    this.root = root;
    this.schemas = schemas;
    this.onAdd = onAdd; // (type, clientX?, clientY?) => void
    this.search = root.querySelector("#palette-search");
    this.list = root.querySelector("#palette-list");
    this.search.addEventListener("input", () => this.render());
    this.search.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !(e.ctrlKey || e.metaKey)) {
        const best = rank(this.schemas, this.search.value, new Map())[0];
        if (best) this.onAdd(best.type);
      } else if (e.key === "Escape") {
        this.search.value = "";
        this.render();
        this.search.blur();
      }
    });
    this.render();
  }

  render() {
    const query = this.search.value.trim();
    const groups = new Map();
    for (const schema of Object.values(this.schemas)) {
      if (query && !matches(schema, query)) continue;
      const key = schema.category || "misc";
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(schema);
    }
    const sections = [];
    for (const category of [...groups.keys()].sort()) {
      const section = el("section", "palette-group");
      section.append(el("h3", null, category));
      for (const schema of groups.get(category).sort((a, b) => a.type.localeCompare(b.type))) {
        const item = el("div", "palette-item");
        item.dataset.type = schema.type;
        item.draggable = true;
        item.title = schema.description || schema.type;
        const name = el("span", "palette-name", schema.display_name || schema.type);
        const hint = el("span", "palette-hint", (schema.description || "").split("\n")[0]);
        item.append(name, hint);
        if (schema.plugin && schema.plugin !== "easel") item.append(el("span", "palette-plugin", schema.plugin));
        item.addEventListener("click", () => this.onAdd(schema.type));
        item.addEventListener("dragstart", (e) => {
          e.dataTransfer.setData("application/x-easel-node", schema.type);
          e.dataTransfer.effectAllowed = "copy";
        });
        section.append(item);
      }
      sections.push(section);
    }
    if (!sections.length) sections.push(el("p", "palette-empty", `No node matches “${query}”.`));
    this.list.replaceChildren(...sections);
  }
}
