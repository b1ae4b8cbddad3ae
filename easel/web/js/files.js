// Saving and loading: server workflows, local files, export, ComfyUI import, dropped PNGs.

import { api } from "./api.js";
import { el } from "./dom.js";

export class Files {
  constructor({ editor, toast, unsaved }) {
    this.editor = editor; // {load(workflow, name), workflow(), name()}
    this.unsaved = unsaved; // {set(modified), confirmDiscard(what)}
    this.toast = toast;
    this.dialog = document.getElementById("dlg-open");
    this.list = document.getElementById("open-list");
    this.input = document.getElementById("file-input");
    this.input.addEventListener("change", () => {
      if (this.input.files.length) this.openFile(this.input.files[0]);
      this.input.value = "";
    });
    document.getElementById("open-file").addEventListener("click", () => { this.dialog.close(); this.input.click(); });
    document.getElementById("open-close").addEventListener("click", () => this.dialog.close());
  }

  async save() {
    const name = this.editor.name().trim();
    if (!name) { this.toast("Give the workflow a name first (top left).", "warn"); return; }
    try {
      const same = (await api.workflows()).workflows.find((w) => w.name === name);
      if (same?.readonly && !window.confirm(`“${name}” is a project workflow. Save your own ` +
          `copy under that name? It will be opened instead of the project's.`)) return;
      if (same && !same.readonly && this.savedAs !== name &&
          !window.confirm(`You already have a workflow “${name}”. Replace it?`)) return;
      const saved = await api.saveWorkflow(name, this.editor.workflow());
      this.savedAs = saved.name;
      this.unsaved.set(false);
      this.toast(`Saved “${saved.name}”`, "info");
    } catch (err) {
      this.toast(`Not saved: ${err.message}`, "error");
    }
  }

  async showOpen() {
    this.list.replaceChildren(el("p", "muted", "Loading…"));
    this.dialog.showModal();
    let listed;
    try { listed = await api.workflows(); } catch (err) {
      this.list.replaceChildren(el("p", "error", err.message));
      return;
    }
    if (!listed.workflows.length) {
      this.list.replaceChildren(el("p", "muted", "No saved workflows yet. Save one with Ctrl+S."));
      return;
    }
    this.list.replaceChildren(...listed.workflows.map((w) => {
      const row = el("div", "open-row");
      const open = el("button", "open-name", w.name);
      open.addEventListener("click", () => this.openSaved(w.name));
      row.append(open, el("span", `badge ${w.source}`, w.readonly ? "project" : "mine"));
      if (!w.readonly) {
        const del = el("button", "small danger", "Delete");
        del.addEventListener("click", async () => {
          try { await api.deleteWorkflow(w.name); row.remove(); } catch (err) { this.toast(err.message, "error"); }
        });
        row.append(del);
      }
      return row;
    }));
  }

  async openSaved(name) {
    if (!this.unsaved.confirmDiscard(`open “${name}”`)) return;
    try {
      this.editor.load(await api.workflow(name), name);
      this.savedAs = name;
      this.dialog.close();
      this.toast(`Opened “${name}”`, "info");
    } catch (err) {
      this.toast(`Cannot open “${name}”: ${err.message}`, "error");
    }
  }

  /** A dropped file: a workflow (JSON, PNG with one), else an image `onImage(file)` takes. */
  async openDropped(file, onImage) {
    if (!file.type.startsWith("image/")) return this.openFile(file);
    if (file.type !== "image/png") return onImage(file);
    let found;
    try {
      found = await api.fromFile(file);
    } catch (err) {
      if (err.status >= 400 && err.status < 500) return onImage(file); // no workflow in it
      this.toast(`Cannot read ${file.name}: ${err.message}`, "error");
      return;
    }
    if (this.unsaved.confirmDiscard(`open ${file.name}`)) this.#show(found, file);
  }

  /** A .json (Easel or ComfyUI) or a .png with a workflow in it; the server reads both. */
  async openFile(file) {
    if (!this.unsaved.confirmDiscard(`open ${file.name}`)) return;
    try {
      this.#show(await api.fromFile(file), file);
    } catch (err) {
      const detail = err.problems?.length ? `: ${err.problems.map((p) => p.message).join("; ")}` : "";
      this.toast(`No workflow loaded from ${file.name}: ${err.message}${detail}`, "error");
    }
  }

  #show(found, file) {
    const name = file.name.replace(/\.(json|png)$/i, "");
    this.editor.load(found.workflow, name);
    const from = found.from === "easel" ? "" : ` (converted from ${found.from.startsWith("comfy") ? "ComfyUI" : found.from})`;
    this.toast(`Loaded the workflow from ${file.name}${from}`, "info");
  }

  exportJson() {
    const text = JSON.stringify(this.editor.workflow(), null, 2);
    const link = el("a");
    link.href = URL.createObjectURL(new Blob([text], { type: "application/json" }));
    link.download = `${this.editor.name().trim() || "workflow"}.json`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  }
}
