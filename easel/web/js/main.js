// The editor's entry point: `boot` wires graph, canvas, palette, runs, files, shortcuts and
// plugins, one small setup function per part.

import { api } from "./api.js";
import { Canvas, setTypeColor } from "./canvas.js";
import { ContextMenu } from "./contextmenu.js";
import { Files } from "./files.js";
import { Graph, REROUTE } from "./graph.js";
import { Palette } from "./palette.js";
import { Runner } from "./runs.js";
import { NodeSearch, linkSlot } from "./search.js";
import { MaskEditor } from "./maskeditor.js";
import { Minimap } from "./minimap.js";
import { WorkflowTabs } from "./tabs.js";
import { registerWidget } from "./widgets.js";
import { loadPlugins } from "./plugins.js";

const STORAGE_KEY = "easel.editor.v1";
const CLIPBOARD_KEY = "easel.clipboard.v1";
const DEFAULT_WORKFLOW = "text_to_image";
const SAVE_DELAY_MS = 200; // persist at most this often while editing
const PASTE_OFFSET = 30; // world units a paste moves when the pointer is not on the canvas
const NODE_SIZE = { width: 250, height: 160 }; // a new node's footprint, for placing it
const NODE_GAP = { x: 280, y: 220 }; // the grid new nodes step along to find free space
const GRID_COLUMNS = 4;
const MAX_PLACEMENT_TRIES = 40;
const TOAST_MS = { error: 8000, other: 3500 };
const PANELS_KEY = "easel.panels.v1";
const THEME_KEY = "easel.theme.v1";
const NARROW = { palette: 800, sidebar: 1200 }; // below these widths a panel starts folded
const KEY_ZOOM = 1.2; // + and - zoom by this factor
const KEY_PAN = 80; // arrow keys pan by this many pixels (Shift: four times)

function makeToaster(box) {
  return function toast(message, kind = "info") {
    const item = document.createElement("div");
    item.className = `toast ${kind}`;
    item.setAttribute("role", kind === "error" ? "alert" : "status");
    item.textContent = message;
    item.addEventListener("click", () => item.remove());
    box.append(item);
    setTimeout(() => item.remove(), kind === "error" ? TOAST_MS.error : TOAST_MS.other);
  };
}

function typing(target) {
  return target instanceof HTMLElement && target.closest("input, textarea, select, [contenteditable]");
}

/** Unsaved changes: the marker, and asking before they are replaced. */
function makeUnsaved({ graph, nameInput }) {
  const unsaved = {
    modified: false,
    onChange: null, // the tabs show the marker too
    set(on) {
      unsaved.modified = Boolean(on);
      unsaved.onChange?.();
      document.body.classList.toggle("modified", unsaved.modified);
      document.title = `${unsaved.modified ? "● " : ""}${nameInput.value || "untitled"} · Easel`;
    },
    /** True when nothing unsaved would be lost, or the user agrees to lose it. */
    confirmDiscard(what = "replace the workflow") {
      if (!unsaved.modified || !graph.nodes.size) return true;
      return window.confirm(`“${nameInput.value || "untitled"}” has unsaved changes. ` +
        `Discard them and ${what}?`);
    },
  };
  return unsaved;
}

function makeEditor({ graph, canvas, toast, nameInput, palette, menu, unsaved }) {
  const definedHooks = [];
  // -- the plugin API (docs/plugins.md lists every member; tests/core/test_docs.py checks)
  const editor = {
    graph,
    canvas,
    toast,
    api,
    registerWidget,
    setSocketColor(type, css) {
      setTypeColor(type, css);
      canvas.render();
    },
    onNodeDefined(fn) {
      definedHooks.push(fn);
      for (const schema of Object.values(graph.schemas)) fn(schema);
      palette.render();
      canvas.render();
    },
    onNodeExecuted(fn) {
      editor.runner.onNodeExecuted(fn);
    },
    addContextMenuItem(item) {
      menu.add(item);
    },
    setValue(nodeId, input, value) {
      graph.checkpoint();
      graph.setValue(nodeId, input, value);
      canvas.renderNode(nodeId);
    },
    on(type, fn) {
      editor.runner.on(type, fn);
    },
    name() {
      return nameInput.value;
    },
    workflow() {
      const workflow = graph.toWorkflow();
      workflow.ui.name = nameInput.value;
      return workflow;
    },
    load(workflow, name) {
      graph.load(workflow);
      if (name) nameInput.value = name;
      else if (workflow.ui?.name) nameInput.value = workflow.ui.name;
      unsaved.set(false);
      canvas.clearStates();
      requestAnimationFrame(() => canvas.fit());
    },
  };
  menu.editor = editor;
  return editor;
}

/** The current workflow survives a reload. */
function setupPersistence({ graph, canvas, canvasRoot, nameInput, editor, unsaved }) {
  let saveTimer = null;
  const save = () => {
    clearTimeout(saveTimer);
    saveTimer = null;
    const state = { workflow: editor.workflow(), view: canvas.view, name: nameInput.value,
                    modified: unsaved.modified };
    try {
      localStorage.setItem(STORAGE_KEY, JSON.stringify(state));
      kept = true;
    } catch { kept = false; /* storage full: beforeunload warns */ }
  };
  let kept = true;
  const persist = () => {
    clearTimeout(saveTimer);
    saveTimer = setTimeout(save, SAVE_DELAY_MS);
  };
  // A reload or a closed tab right after an edit keeps it.
  window.addEventListener("pagehide", () => { if (saveTimer) save(); });
  // Edits survive a reload or a closed tab in localStorage; when they could not be stored
  // there, leaving the page asks first.
  window.addEventListener("beforeunload", (e) => {
    if (saveTimer) save();
    if (unsaved.modified && !kept) { e.preventDefault(); e.returnValue = ""; }
  });
  graph.addEventListener("change", (e) => {
    const d = e.detail;
    if (!d.loaded && !d.seeds && !unsaved.modified) unsaved.set(true);
    if (!(d.value || d.moved || d.seeds)) canvas.render();
    persist();
    document.getElementById("btn-undo").disabled = !graph.undoStack.length;
    document.getElementById("btn-redo").disabled = !graph.redoStack.length;
  });
  canvasRoot.addEventListener("viewchange", persist);
  nameInput.addEventListener("change", () => { unsaved.set(unsaved.modified); persist(); });
}

/** Where a new node goes: at the pointer, else near the middle of the view, on free space. */
function makeNodeAdder({ graph, canvas }) {
  const overlaps = (x, y) => [...graph.nodes.values()].some((n) => {
    const element = canvas.elements.get(n.id);
    const w = element?.offsetWidth || NODE_SIZE.width, h = element?.offsetHeight || NODE_SIZE.height;
    return x < n.x + w + 10 && x + NODE_SIZE.width > n.x - 10 && y < n.y + h + 10 && y + NODE_SIZE.height > n.y - 10;
  });
  const room = (start, fromPointer) => {
    if (!overlaps(start.x, start.y)) return start;
    // From the pointer, look close by first (below, right); else step along a grid.
    for (let i = 1; i < MAX_PLACEMENT_TRIES; i++) {
      const at = fromPointer
        ? { x: start.x + (i % 2) * (i >> 1) * 40 + 40 * (i >> 2), y: start.y + 40 * i }
        : { x: start.x + (i % GRID_COLUMNS) * NODE_GAP.x, y: start.y + Math.floor(i / GRID_COLUMNS) * NODE_GAP.y };
      if (!overlaps(at.x, at.y)) return at;
    }
    return start;
  };
  return (type, clientX, clientY, { exact = false } = {}) => {
    let at;
    if (clientX !== undefined) {
      const p = canvas.toWorld(clientX, clientY);
      at = { x: p.x - 20, y: p.y - 16 };
      if (!exact) at = room(at, true);
    } else {
      const c = canvas.center();
      at = room({ x: c.x - NODE_SIZE.width / 2, y: c.y - NODE_SIZE.height / 2 }, false);
    }
    graph.checkpoint();
    const node = graph.addNode(type, at.x, at.y);
    canvas.select([node.id]);
    return node;
  };
}

/** The search at the pointer: double-click, `/`, or a link dropped on empty space. */
function setupSearch({ graph, canvas, canvasRoot, addNode, schemas, toast }) {
  const search = new NodeSearch(schemas, {
    onPick: (type, clientX, clientY, filter) => {
      const node = addNode(type, clientX, clientY, { exact: Boolean(filter) });
      if (!filter) return;
      const slot = linkSlot(graph.schema(type), filter);
      const problem = filter.dir === "out"
        ? graph.connect(filter.node, filter.name, node.id, slot)
        : graph.connect(node.id, slot, filter.node, filter.name);
      if (problem) toast(`Cannot connect: ${problem}`, "error");
    },
  });
  api.aliases().then((table) => search.setAliases(table)).catch(() => { /* search by name only */ });
  canvasRoot.addEventListener("searchat", (e) => search.open(e.detail.clientX, e.detail.clientY));
  canvasRoot.addEventListener("linkdrop", (e) => search.open(e.detail.clientX, e.detail.clientY, e.detail.filter));
  return search;
}

function setupRunner({ graph, canvas, toast, editor, unsaved }) {
  const lightbox = document.getElementById("lightbox");
  const runner = new Runner({
    graph, canvas, toast,
    status: document.getElementById("queue-status"),
    queueList: document.getElementById("queue-list"),
    gallery: document.getElementById("gallery"),
    name: () => editor.name(),
    openRun: (run) => { // in a new tab: nothing is replaced
      editor.tabs.open(run.workflow, `${run.workflow.ui?.name || "run"} · ${run.id.slice(0, 6)}`);
      return true;
    },
    lightbox: (file) => {
      lightbox.querySelector("img").src = "/api/outputs/" + file.split("/").map(encodeURIComponent).join("/");
      lightbox.querySelector(".caption").textContent = file;
      lightbox.showModal();
    },
  });
  editor.runner = runner;
  lightbox.addEventListener("click", () => lightbox.close());
  return runner;
}

function makeClipboard({ graph, canvas, toast, pointer }) {
  return {
    copy() {
      if (!canvas.selected.size) return;
      localStorage.setItem(CLIPBOARD_KEY, JSON.stringify(graph.copy([...canvas.selected])));
      toast(`Copied ${canvas.selected.size} node${canvas.selected.size > 1 ? "s" : ""}`, "info");
    },
    paste(keepOutside = false) {
      const text = localStorage.getItem(CLIPBOARD_KEY);
      if (!text) return;
      const clip = JSON.parse(text);
      if (!clip.nodes?.length) return;
      let dx = PASTE_OFFSET, dy = PASTE_OFFSET;
      if (pointer.at) {
        const at = canvas.toWorld(pointer.at.x, pointer.at.y);
        dx = at.x - Math.min(...clip.nodes.map((n) => n.x));
        dy = at.y - Math.min(...clip.nodes.map((n) => n.y));
      }
      graph.checkpoint();
      canvas.select(graph.paste(clip, dx, dy, { keepOutside }));
    },
  };
}

function removeSelected({ graph, canvas }) {
  if (!canvas.selected.size) return;
  graph.checkpoint();
  graph.removeNodes([...canvas.selected]);
  canvas.selected.clear();
}

/** Toolbar buttons; returns the actions the shortcuts share. */
function setupActions({ graph, canvas, toast, runner, files, editor, unsaved }) {
  const actions = {
    queue: () => runner.queue(),
    save: () => files.save(),
    open: () => files.showOpen(),
    export: () => files.exportJson(),
    import: () => document.getElementById("file-input").click(),
    undo: () => graph.undo() || toast("Nothing to undo", "info"),
    redo: () => graph.redo() || toast("Nothing to redo", "info"),
    fit: () => canvas.fit(),
    new: () => { if (unsaved.confirmDiscard("start a new one")) editor.load({ nodes: {} }, "untitled"); },
    help: () => document.getElementById("dlg-help").showModal(),
  };
  for (const [name, action] of Object.entries(actions)) {
    document.getElementById(`btn-${name}`)?.addEventListener("click", action);
  }
  document.getElementById("help-close").addEventListener("click", () => document.getElementById("dlg-help").close());
  return actions;
}

/** Collapsible side panels; narrow windows start with them folded away. */
function setupPanels() {
  const saved = (() => { try { return JSON.parse(localStorage.getItem(PANELS_KEY) || "null"); } catch { return null; } })();
  const state = saved || { palette: window.innerWidth >= NARROW.palette, sidebar: window.innerWidth >= NARROW.sidebar };
  const apply = () => {
    document.body.classList.toggle("hide-palette", !state.palette);
    document.body.classList.toggle("hide-sidebar", !state.sidebar);
    document.getElementById("btn-toggle-palette").classList.toggle("active", state.palette);
    document.getElementById("btn-toggle-sidebar").classList.toggle("active", state.sidebar);
  };
  for (const panel of ["palette", "sidebar"]) {
    document.getElementById(`btn-toggle-${panel}`).addEventListener("click", () => {
      state[panel] = !state[panel];
      localStorage.setItem(PANELS_KEY, JSON.stringify(state));
      apply();
    });
  }
  apply();
  // The theme: dark unless the light one was chosen.
  document.body.classList.toggle("light", localStorage.getItem(THEME_KEY) === "light");
  document.getElementById("btn-theme").addEventListener("click", () => {
    const on = document.body.classList.toggle("light");
    localStorage.setItem(THEME_KEY, on ? "light" : "dark");
  });
}

function setupTabs() {
  for (const tab of document.querySelectorAll("#sidebar .tabs button")) {
    tab.addEventListener("click", () => {
      for (const other of document.querySelectorAll("#sidebar .tabs button")) other.classList.toggle("active", other === tab);
      for (const panel of document.querySelectorAll("#sidebar .panel")) panel.hidden = panel.id !== `panel-${tab.dataset.tab}`;
    });
  }
}

function setupKeyboard({ graph, canvas, actions, clipboard, search, pointer, nodeActions }) {
  window.addEventListener("keydown", (e) => {
    const mod = e.ctrlKey || e.metaKey;
    const key = e.key.toLowerCase();
    if (mod && key === "enter") { e.preventDefault(); actions.queue(); return; }
    if (mod && key === "s") { e.preventDefault(); actions.save(); return; }
    if (mod && key === "o") { e.preventDefault(); actions.open(); return; }
    if (typing(e.target) || document.querySelector("dialog[open]")) return;
    if (mod && key === "z" && !e.shiftKey) { e.preventDefault(); actions.undo(); }
    else if (mod && (key === "y" || (key === "z" && e.shiftKey))) { e.preventDefault(); actions.redo(); }
    else if (mod && key === "c") { clipboard.copy(); }
    else if (mod && key === "v") { e.preventDefault(); clipboard.paste(e.shiftKey); }
    else if (mod && key === "d") { e.preventDefault(); nodeActions.duplicate(); }
    else if (mod && key === "b") { e.preventDefault(); nodeActions.mode("bypass"); }
    else if (mod && key === "m") { e.preventDefault(); nodeActions.mode("mute"); }
    else if (mod && key === "g") { e.preventDefault(); nodeActions.group(); }
    else if (e.altKey && key === "c") { e.preventDefault(); nodeActions.collapse(); }
    else if (mod && key === "a") { e.preventDefault(); canvas.select([...graph.nodes.keys()]); }
    else if (key === "delete" || key === "backspace") { e.preventDefault(); removeSelected({ graph, canvas }); }
    else if (key === "/") {
      e.preventDefault();
      const rect = canvas.root.getBoundingClientRect();
      const at = pointer.at || { x: rect.left + rect.width / 2, y: rect.top + rect.height / 3 };
      search.open(at.x, at.y);
    }
    else if (key === "f") { actions.fit(); }
    else if (!mod && key === "m") { document.body.classList.toggle("hide-minimap"); }
    else if (!mod && (key === "+" || key === "=")) { canvas.zoomBy(KEY_ZOOM); }
    else if (!mod && (key === "-" || key === "_")) { canvas.zoomBy(1 / KEY_ZOOM); }
    else if (!mod && key === "0") { canvas.zoomBy(1 / canvas.view.zoom); }
    else if (key.startsWith("arrow")) {
      e.preventDefault();
      const step = e.shiftKey ? KEY_PAN * 4 : KEY_PAN;
      const [dx, dy] = { arrowleft: [step, 0], arrowright: [-step, 0], arrowup: [0, step], arrowdown: [0, -step] }[key];
      canvas.panBy(dx, dy);
    }
    else if (key === "?") { actions.help(); }
    else if (key === "escape") { canvas.select([]); }
  });
}

/** Nodes dragged from the palette, files dropped onto the canvas. */
function setupDrop({ canvasRoot, addNode, files, graph, canvas, toast }) {
  /** A plain image: uploaded, then a LoadImage node (or another image-upload node) shows it. */
  const imageNode = async (file, clientX, clientY) => {
    const type = graph.schema("LoadImage") ? "LoadImage" : Object.values(graph.schemas).find(
      (s) => Object.values(s.inputs).some((i) => i.widget === "image_upload"))?.type;
    if (!type) { toast(`No node loads images: ${file.name} was not used`, "error"); return; }
    let stored;
    try { stored = await api.upload(file); } catch (err) { toast(`Upload refused: ${err.message}`, "error"); return; }
    const input = Object.entries(graph.schema(type).inputs).find(([, s]) => s.widget === "image_upload")[0];
    const rect = canvasRoot.getBoundingClientRect();
    const inside = clientX > rect.left && clientX < rect.right && clientY > rect.top && clientY < rect.bottom;
    const node = inside ? addNode(type, clientX, clientY) : addNode(type);
    graph.setValue(node.id, input, stored.name);
    canvas.renderNode(node.id);
    toast(`Uploaded ${stored.name}`, "info");
  };
  canvasRoot.addEventListener("dragover", (e) => {
    e.preventDefault();
    canvasRoot.classList.add("drop-target");
  });
  canvasRoot.addEventListener("dragleave", () => canvasRoot.classList.remove("drop-target"));
  canvasRoot.addEventListener("drop", (e) => {
    e.preventDefault();
    canvasRoot.classList.remove("drop-target");
    const type = e.dataTransfer.getData("application/x-easel-node");
    if (type) { addNode(type, e.clientX, e.clientY); return; }
    const file = e.dataTransfer.files[0];
    const { clientX, clientY } = e;
    if (file) files.openDropped(file, (image) => imageNode(image, clientX, clientY));
  });
}

/** What the context menu and the shortcuts do to the selected nodes. */
function makeNodeActions({ graph, canvas, toast, clipboard }) {
  const selected = () => [...canvas.selected];
  const toggleUi = (key) => {
    const ids = selected();
    if (!ids.length) return;
    const on = !ids.every((id) => graph.nodeUi(key, id));
    graph.checkpoint();
    graph.setNodeUi(key, ids, on);
  };
  return {
    mode(mode) {
      const ids = selected();
      if (!ids.length) return;
      graph.checkpoint();
      graph.toggleMode(ids, mode);
    },
    collapse: () => toggleUi("collapsed"),
    pin: () => toggleUi("pinned"),
    color(colour) {
      graph.checkpoint();
      graph.setNodeUi("colors", selected(), colour);
    },
    rename(node) {
      const current = graph.nodeUi("titles", node.id) || graph.schema(node.type)?.display_name || node.type;
      const title = window.prompt(`Title of ${node.id} (${node.type}); empty for the default`, current);
      if (title === null) return;
      graph.checkpoint();
      graph.setNodeUi("titles", [node.id], title.trim() === node.type ? "" : title.trim());
    },
    duplicate() {
      if (!canvas.selected.size) return;
      const clip = graph.copy(selected());
      graph.checkpoint();
      canvas.select(graph.paste(clip, PASTE_OFFSET, PASTE_OFFSET, { keepOutside: true }));
    },
    remove: () => removeSelected({ graph, canvas }),
    group() {
      const ids = selected();
      if (!ids.length) { toast("Select the nodes to group first (Ctrl+G groups the selection)", "info"); return; }
      graph.checkpoint();
      graph.addGroup({ ...canvas.boundsOf(ids), title: "Group" });
    },
    clipboard,
  };
}

/** Output images open in the lightbox; image uploads have a mask editor. */
function setupImages({ canvasRoot, runner, toast }) {
  canvasRoot.addEventListener("openimage", (e) => runner.lightbox(e.detail.file));
  let editor = null;
  canvasRoot.addEventListener("editmask", (e) => {
    editor ||= new MaskEditor({ toast });
    editor.open(e.detail.name, e.detail.done);
  });
}

function setupMenu(menu, { graph, canvas, nodeActions, search }) {
  const all = (key, node) => [...canvas.selected].every((id) => graph.nodeUi(key, id)) && graph.nodeUi(key, node.id);
  const modeLabel = (mode, word) => (node) => (node.mode === mode ? `Un${word.toLowerCase()}` : word);
  menu.add({ label: modeLabel("bypass", "Bypass"), keys: "Ctrl+B", action: () => nodeActions.mode("bypass") });
  menu.add({ label: modeLabel("mute", "Mute"), keys: "Ctrl+M", action: () => nodeActions.mode("mute") });
  menu.add({ label: (n) => (all("collapsed", n) ? "Expand" : "Collapse"), keys: "Alt+C", action: nodeActions.collapse });
  menu.add({ label: (n) => (all("pinned", n) ? "Unpin" : "Pin"), action: nodeActions.pin });
  menu.add({ label: "Rename…", action: (node) => nodeActions.rename(node) });
  menu.add({ label: "Colour", swatches: true, action: (_node, _editor, colour) => nodeActions.color(colour) });
  menu.add({ label: "Reset size", when: (n) => Boolean(graph.nodeUi("sizes", n.id)), action: () => {
    graph.checkpoint();
    graph.setNodeUi("sizes", [...canvas.selected], null);
  } });
  // ComfyUI's "convert widget to input": hides a value input's widget (its socket sets it).
  const valueInputs = (n) => Object.entries(graph.schema(n.type)?.inputs || {}).filter(([, s]) => !s.link_only);
  menu.add({ label: "Convert widget to input", when: (n) => valueInputs(n).length > 0, children: (n) =>
    valueInputs(n).map(([name]) => ({
      label: graph.isConverted(n.id, name) ? `Convert ${name} to widget` : `Convert ${name} to input`,
      action: () => { graph.checkpoint(); graph.toggleConverted(n.id, name); },
    })) });
  menu.add({ label: "Duplicate", keys: "Ctrl+D", action: nodeActions.duplicate });
  menu.add({ label: "Group selection", keys: "Ctrl+G", action: nodeActions.group });
  menu.add({ label: "Remove", keys: "Del", action: nodeActions.remove });

  menu.addGroupItem({ label: "Rename group…", action: ({ index, group }) => {
    const title = window.prompt("Group title", group.title || "Group");
    if (title === null) return;
    graph.checkpoint();
    graph.groups[index].title = title.trim() || "Group";
    graph.changed({ group: index });
  } });
  menu.addGroupItem({ label: "Colour", swatches: true, action: ({ index }, _editor, colour) => {
    graph.checkpoint();
    graph.groups[index].color = colour;
    graph.changed({ group: index });
  } });
  menu.addGroupItem({ label: "Fit to its nodes", action: ({ index, group }) => {
    const ids = canvas.groupMembers(group);
    if (!ids.length) return;
    graph.checkpoint();
    Object.assign(graph.groups[index], canvas.boundsOf(ids));
    graph.changed({ group: index });
  } });
  menu.addGroupItem({ label: "Remove group (keep its nodes)", action: ({ index }) => {
    graph.checkpoint();
    graph.removeGroup(index);
  } });

  menu.addLinkItem({ label: "Delete link", keys: "Del", action: ({ to, input }) => {
    graph.checkpoint();
    graph.disconnect(to, input);
  } });
  menu.addLinkItem({ label: "Insert reroute", when: () => Boolean(graph.schema(REROUTE)),
    action: ({ to, input, clientX, clientY }) => {
      const at = canvas.toWorld(clientX, clientY);
      graph.checkpoint();
      const id = graph.insertReroute(to, input, at.x - 28, at.y - 11);
      if (id) canvas.select([id]);
    } });

  menu.addCanvasItem({ label: "Add node…", keys: "/", action: ({ clientX, clientY }) => search.open(clientX, clientY) });
  menu.addCanvasItem({ label: "Add group", action: ({ clientX, clientY }) => {
    const at = canvas.toWorld(clientX, clientY);
    graph.checkpoint();
    graph.addGroup({ x: Math.round(at.x), y: Math.round(at.y), w: 400, h: 300 });
  } });
  menu.addCanvasItem({ label: "Group selection", keys: "Ctrl+G", when: () => canvas.selected.size > 0,
                       action: nodeActions.group });
}

/** The last workflow, else the default one. */
async function restoreWorkflow({ graph, canvas, nameInput, unsaved }) {
  let restored = false;
  try {
    const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || "null");
    if (saved?.workflow) {
      graph.load(saved.workflow, { keepHistory: true });
      nameInput.value = saved.name || "untitled";
      unsaved.set(Boolean(saved.modified));
      if (saved.view) canvas.setView(saved.view);
      restored = true;
    }
  } catch { /* a broken saved state: start fresh */ }
  if (!restored) {
    try {
      graph.load(await api.workflow(DEFAULT_WORKFLOW), { keepHistory: true });
      nameInput.value = DEFAULT_WORKFLOW;
      requestAnimationFrame(() => canvas.fit());
    } catch {
      canvas.render();
      canvas.setView({ x: 40, y: 40, zoom: 1 });
    }
  }
  graph.undoStack = [];
  document.getElementById("btn-undo").disabled = true;
  document.getElementById("btn-redo").disabled = true;
}

async function boot() {
  const toast = makeToaster(document.getElementById("toasts"));
  let schemas;
  try {
    schemas = await api.nodes();
  } catch (err) {
    document.getElementById("canvas").classList.add("fatal");
    toast(`Cannot load the node types: ${err.message}`, "error");
    return;
  }
  const graph = new Graph(schemas);
  const canvasRoot = document.getElementById("canvas");
  const canvas = new Canvas(canvasRoot, graph, { toast });
  const nameInput = document.getElementById("workflow-name");
  const pointer = { at: null };
  canvasRoot.addEventListener("pointermove", (e) => { pointer.at = { x: e.clientX, y: e.clientY }; });

  const addNode = makeNodeAdder({ graph, canvas });
  const palette = new Palette(document.getElementById("palette"), schemas, { onAdd: (type) => addNode(type) });
  const menu = new ContextMenu(canvasRoot, { graph, canvas });
  const unsaved = makeUnsaved({ graph, nameInput });
  const editor = makeEditor({ graph, canvas, toast, nameInput, palette, menu, unsaved });
  window.easel = editor; // for plugins and for poking at from the console
  setupPersistence({ graph, canvas, canvasRoot, nameInput, editor, unsaved });
  const runner = setupRunner({ graph, canvas, toast, editor, unsaved });
  const files = new Files({ editor, toast, unsaved });
  const actions = setupActions({ graph, canvas, toast, runner, files, editor, unsaved });
  setupTabs();
  setupPanels();
  const minimap = new Minimap(canvasRoot, graph, canvas);
  const search = setupSearch({ graph, canvas, canvasRoot, addNode, schemas, toast });
  const clipboard = makeClipboard({ graph, canvas, toast, pointer });
  const nodeActions = makeNodeActions({ graph, canvas, toast, clipboard });
  setupKeyboard({ graph, canvas, actions, search, pointer, clipboard, nodeActions });
  setupDrop({ canvasRoot, addNode, files, graph, canvas, toast });
  setupImages({ canvasRoot, runner, toast });
  setupMenu(menu, { graph, canvas, nodeActions, search });
  await restoreWorkflow({ graph, canvas, nameInput, unsaved });
  editor.tabs = new WorkflowTabs(document.getElementById("wf-tabs"), { graph, canvas, nameInput, unsaved });
  minimap.update();
  runner.start();
  await loadPlugins(editor);
  document.body.classList.add("ready");
}

boot();
