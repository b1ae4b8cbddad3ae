// A node's right-click menu: the editor's own entries and those plugins add.

import { el } from "./dom.js";

export class ContextMenu {
  constructor(root, { graph, canvas }) {
    this.root = root;
    this.graph = graph;
    this.canvas = canvas;
    this.items = [];
    this.menu = el("div", "context-menu");
    this.menu.setAttribute("role", "menu");
    this.menu.hidden = true;
    document.body.append(this.menu);
    root.addEventListener("contextmenu", (e) => this.open(e));
    window.addEventListener("pointerdown", (e) => { if (!this.menu.contains(e.target)) this.close(); });
    window.addEventListener("keydown", (e) => { if (e.key === "Escape") this.close(); });
  }

  /** `{label, when?(node), action(node, editor)}`: shown for the nodes `when` accepts. */
  add(item) {
    if (!item || typeof item.label !== "string" || typeof item.action !== "function") {
      throw new TypeError("a context menu item needs a label and an action(node, editor)");
    }
    this.items.push(item);
  }

  open(event) {
    const element = event.target.closest?.(".node");
    if (!element) return;
    const node = this.graph.nodes.get(element.dataset.id);
    if (!node) return;
    event.preventDefault();
    if (!this.canvas.selected.has(node.id)) this.canvas.select([node.id]);
    const entries = this.items.filter((item) => {
      try { return !item.when || item.when(node); } catch { return false; }
    });
    this.menu.replaceChildren(...entries.map((item) => {
      const button = el("button", "context-item", item.label);
      button.setAttribute("role", "menuitem");
      button.addEventListener("click", () => {
        this.close();
        try { item.action(node, this.editor); } catch (err) { console.error("menu action failed", err); }
      });
      return button;
    }));
    this.menu.style.left = `${event.clientX}px`;
    this.menu.style.top = `${event.clientY}px`;
    this.menu.hidden = !entries.length;
  }

  close() { this.menu.hidden = true; }
}
