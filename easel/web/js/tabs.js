// Workflow tabs: several workflows open at once, each with its name, view, unsaved marker and
// undo history. The active tab is the graph being edited (kept by main.js's persistence);
// the others are kept here, in localStorage.

import { el } from "./dom.js";

const TABS_KEY = "easel.tabs.v1";

export class WorkflowTabs {
  constructor(bar, { graph, canvas, nameInput, unsaved }) {
    Object.assign(this, { bar, graph, canvas, nameInput, unsaved });
    this.tabs = [null]; // the active one is null: its state lives in the editor
    this.active = 0;
    try {
      const saved = JSON.parse(localStorage.getItem(TABS_KEY) || "null");
      if (saved?.tabs?.length && saved.active >= 0 && saved.active < saved.tabs.length) {
        this.tabs = saved.tabs.map((t, i) => (i === saved.active ? null : t));
        this.active = saved.active;
      }
    } catch { /* one tab */ }
    nameInput.addEventListener("input", () => this.render());
    unsaved.onChange = () => this.render();
    window.addEventListener("pagehide", () => this.persist());
    this.render();
  }

  #capture() {
    return { name: this.nameInput.value, workflow: this.graph.toWorkflow(), view: { ...this.canvas.view },
             modified: this.unsaved.modified, undo: this.graph.undoStack, redo: this.graph.redoStack };
  }

  #restore(tab) {
    this.graph.undoStack = tab.undo || [];
    this.graph.redoStack = tab.redo || [];
    this.nameInput.value = tab.name || "untitled";
    this.graph.load(tab.workflow || { nodes: {} }, { keepHistory: true });
    this.unsaved.set(Boolean(tab.modified));
    this.canvas.clearStates();
    if (tab.view) this.canvas.setView(tab.view);
    else requestAnimationFrame(() => this.canvas.fit());
  }

  switchTo(index) {
    if (index === this.active || !this.tabs[index]) return;
    const next = this.tabs[index];
    this.tabs[this.active] = this.#capture();
    this.tabs[index] = null;
    this.active = index;
    this.#restore(next);
    this.persist();
    this.render();
  }

  /** A new tab (empty, or holding `workflow`), made active. */
  open(workflow = { nodes: {} }, name = "untitled") {
    this.tabs[this.active] = this.#capture();
    this.tabs.push(null);
    this.active = this.tabs.length - 1;
    this.#restore({ workflow, name, view: null, modified: false });
    this.persist();
    this.render();
  }

  close(index) {
    const tab = index === this.active ? this.#capture() : this.tabs[index];
    if (tab.modified && Object.keys(tab.workflow?.nodes || {}).length &&
        !window.confirm(`“${tab.name}” has unsaved changes. Close it anyway?`)) return;
    if (this.tabs.length === 1) {
      this.#restore({ workflow: { nodes: {} }, name: "untitled", view: null, modified: false });
      this.render();
      return;
    }
    if (index === this.active) {
      this.tabs.splice(index, 1);
      this.active = Math.min(index, this.tabs.length - 1);
      const next = this.tabs[this.active];
      this.tabs[this.active] = null;
      this.#restore(next);
    } else {
      this.tabs.splice(index, 1);
      if (index < this.active) this.active -= 1;
    }
    this.persist();
    this.render();
  }

  persist() {
    // The other tabs, without their undo history; the active one is main.js's to keep.
    const tabs = this.tabs.map((t, i) => (i === this.active || !t ? { name: this.nameInput.value }
      : { name: t.name, workflow: t.workflow, view: t.view, modified: t.modified }));
    try { localStorage.setItem(TABS_KEY, JSON.stringify({ active: this.active, tabs })); } catch { /* full */ }
  }

  render() {
    let items = [...this.bar.querySelectorAll(".wf-tab")];
    if (items.length !== this.tabs.length) {
      // Rebuilt only when tabs come or go: a click in progress keeps its button.
      items = this.tabs.map((_, i) => {
        const item = el("div", "wf-tab");
        item.setAttribute("role", "tab");
        item.dataset.index = i;
        const label = el("button", "wf-tab-name");
        label.addEventListener("click", () => this.switchTo(i));
        const close = el("button", "wf-tab-close", "×");
        close.title = "Close this tab";
        close.addEventListener("click", () => this.close(i));
        item.append(label, close);
        return item;
      });
      const add = el("button", "wf-tab-add", "+");
      add.title = "A new tab";
      add.addEventListener("click", () => this.open());
      this.bar.replaceChildren(...items, add);
    }
    this.tabs.forEach((tab, i) => {
      const active = i === this.active;
      const name = (active ? this.nameInput.value : tab.name) || "untitled";
      const item = items[i];
      item.classList.toggle("active", active);
      item.classList.toggle("modified", Boolean(active ? this.unsaved.modified : tab.modified));
      item.setAttribute("aria-selected", String(active));
      const label = item.querySelector(".wf-tab-name");
      label.textContent = name;
      label.title = name;
    });
  }
}
