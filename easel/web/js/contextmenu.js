// Right-click menus: a node's (the editor's own entries and those plugins add), a group's,
// and the empty canvas's.

import { el } from "./dom.js";

/** Colours offered for nodes and groups (null: the theme's). */
export const SWATCHES = [null, "#8a3b3b", "#8a6a2e", "#3f7a45", "#2f6f7a", "#3b4f8a", "#6a3f8a", "#555b66"];

export class ContextMenu {
  constructor(root, { graph, canvas }) {
    this.root = root;
    this.graph = graph;
    this.canvas = canvas;
    this.items = []; // a node's
    this.groupItems = [];
    this.canvasItems = [];
    this.linkItems = [];
    this.menu = el("div", "context-menu");
    this.menu.setAttribute("role", "menu");
    this.menu.hidden = true;
    document.body.append(this.menu);
    root.addEventListener("contextmenu", (e) => this.open(e));
    window.addEventListener("pointerdown", (e) => { if (!this.menu.contains(e.target)) this.close(); });
    window.addEventListener("keydown", (e) => { if (e.key === "Escape") this.close(); });
  }

  /** `{label, when?(node), action(node, editor)}`: shown for the nodes `when` accepts.
   *  `swatches: true` shows a row of colours; the action then receives the colour third.
   *  `children(node)` -> [{label, action}] makes the entry open a list of sub-entries. */
  add(item, list = this.items) {
    if (!item || (typeof item.label !== "string" && typeof item.label !== "function") ||
        (typeof item.action !== "function" && typeof item.children !== "function")) {
      throw new TypeError("a context menu item needs a label and an action(node, editor) or children(node)");
    }
    list.push(item);
  }

  addGroupItem(item) { this.add(item, this.groupItems); }
  addCanvasItem(item) { this.add(item, this.canvasItems); }
  addLinkItem(item) { this.add(item, this.linkItems); }

  open(event) {
    let subject, items;
    const element = event.target.closest?.(".node");
    const groupEl = event.target.closest?.(".group");
    const linkEl = event.target.closest?.("path.link:not(.temp)");
    if (linkEl) {
      subject = { from: linkEl.dataset.from, to: linkEl.dataset.to, input: linkEl.dataset.input,
                  clientX: event.clientX, clientY: event.clientY };
      items = this.linkItems;
    } else if (element) {
      subject = this.graph.nodes.get(element.dataset.id);
      if (!subject) return;
      if (!this.canvas.selected.has(subject.id)) this.canvas.select([subject.id]);
      items = this.items;
    } else if (groupEl) {
      subject = { index: Number(groupEl.dataset.index), group: this.graph.groups[Number(groupEl.dataset.index)] };
      items = this.groupItems;
    } else {
      subject = { clientX: event.clientX, clientY: event.clientY };
      items = this.canvasItems;
    }
    event.preventDefault();
    const entries = items.filter((item) => {
      try { return !item.when || item.when(subject); } catch { return false; }
    });
    this.menu.replaceChildren(...entries.map((item) => this.#entry(item, subject)));
    this.menu.style.left = `${event.clientX}px`;
    this.menu.style.top = `${event.clientY}px`;
    this.menu.hidden = !entries.length;
  }

  #entry(item, subject) {
    const run = (...extra) => {
      this.close();
      try { item.action(subject, this.editor, ...extra); } catch (err) { console.error("menu action failed", err); }
    };
    const label = typeof item.label === "function" ? item.label(subject) : item.label;
    if (item.swatches) {
      const row = el("div", "context-swatches");
      row.append(el("span", "context-label", label));
      for (const colour of SWATCHES) {
        const swatch = el("button", "swatch");
        swatch.dataset.color = colour || "";
        swatch.title = colour || "default";
        if (colour) swatch.style.background = colour;
        swatch.addEventListener("click", () => run(colour));
        row.append(swatch);
      }
      return row;
    }
    const button = el("button", "context-item", label);
    if (item.keys) button.append(el("kbd", null, item.keys));
    button.setAttribute("role", "menuitem");
    if (item.children) {
      const children = item.children(subject);
      const list = el("div", "context-submenu");
      list.hidden = true;
      for (const child of children) {
        const sub = el("button", "context-item sub", child.label);
        sub.setAttribute("role", "menuitem");
        sub.addEventListener("click", () => {
          this.close();
          try { child.action(subject, this.editor); } catch (err) { console.error("menu action failed", err); }
        });
        list.append(sub);
      }
      button.append(el("span", "context-arrow", "▸"));
      button.setAttribute("aria-expanded", "false");
      button.addEventListener("click", () => {
        list.hidden = !list.hidden;
        button.setAttribute("aria-expanded", String(!list.hidden));
      });
      const wrap = el("div", "context-group");
      wrap.append(button, list);
      return wrap;
    }
    button.addEventListener("click", () => run());
    return button;
  }

  close() { this.menu.hidden = true; }
}
