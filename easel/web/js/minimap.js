// The minimap: every node as a small box, the visible area as a frame; press or drag on it
// to move the view there. `M` shows or hides it.

import { el } from "./dom.js";

const WIDTH = 200;
const HEIGHT = 140;
const PAD = 6;

export class Minimap {
  constructor(root, graph, canvas) {
    this.root = root;
    this.graph = graph;
    this.canvas = canvas;
    this.element = el("canvas", "minimap");
    this.element.id = "minimap";
    this.element.width = WIDTH;
    this.element.height = HEIGHT;
    this.element.title = "Minimap: press or drag to move the view (M hides it)";
    root.append(this.element);
    this.sizes = new Map();
    this.queued = false;
    graph.addEventListener("change", () => { this.sizes.clear(); this.update(); });
    root.addEventListener("viewchange", () => this.update());
    const go = (e) => {
      const world = this.toWorld(e.offsetX, e.offsetY);
      if (!world) return;
      const rect = root.getBoundingClientRect();
      const zoom = canvas.view.zoom;
      canvas.setView({ x: rect.width / 2 - world.x * zoom, y: rect.height / 2 - world.y * zoom, zoom });
    };
    this.element.addEventListener("pointerdown", (e) => {
      e.stopPropagation(); // not a pan of the canvas
      e.preventDefault();
      this.element.setPointerCapture?.(e.pointerId);
      this.dragging = true;
      go(e);
    });
    this.element.addEventListener("pointermove", (e) => { if (this.dragging) go(e); });
    this.element.addEventListener("pointerup", () => { this.dragging = false; });
    this.element.addEventListener("dblclick", (e) => e.stopPropagation());
    this.element.addEventListener("wheel", (e) => e.stopPropagation());
  }

  /** Redraw at the next frame (many changes in one frame draw once). */
  update() {
    if (this.queued) return;
    this.queued = true;
    requestAnimationFrame(() => { this.queued = false; this.draw(); });
  }

  #size(id) {
    if (!this.sizes.has(id)) {
      const element = this.canvas.elements.get(id);
      this.sizes.set(id, { w: element?.offsetWidth || 250, h: element?.offsetHeight || 120 });
    }
    return this.sizes.get(id);
  }

  #bounds() {
    let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
    for (const node of this.graph.nodes.values()) {
      const { w, h } = this.#size(node.id);
      minX = Math.min(minX, node.x); minY = Math.min(minY, node.y);
      maxX = Math.max(maxX, node.x + w); maxY = Math.max(maxY, node.y + h);
    }
    // The visible area counts too, so its frame always fits.
    const rect = this.root.getBoundingClientRect();
    const { x, y, zoom } = this.canvas.view;
    minX = Math.min(minX, -x / zoom); minY = Math.min(minY, -y / zoom);
    maxX = Math.max(maxX, (rect.width - x) / zoom); maxY = Math.max(maxY, (rect.height - y) / zoom);
    const scale = Math.min((WIDTH - 2 * PAD) / (maxX - minX), (HEIGHT - 2 * PAD) / (maxY - minY));
    return { minX, minY, scale, rect };
  }

  toWorld(px, py) {
    if (!this.layout) return null;
    const { minX, minY, scale } = this.layout;
    return { x: minX + (px - PAD) / scale, y: minY + (py - PAD) / scale };
  }

  draw() {
    const hidden = !this.graph.nodes.size;
    this.element.hidden = hidden;
    if (hidden) return;
    const ctx = this.element.getContext("2d");
    const layout = this.#bounds();
    this.layout = layout;
    const { minX, minY, scale, rect } = layout;
    const map = (x, y) => [PAD + (x - minX) * scale, PAD + (y - minY) * scale];
    ctx.clearRect(0, 0, WIDTH, HEIGHT);
    ctx.fillStyle = "rgba(20, 22, 28, 0.85)";
    ctx.fillRect(0, 0, WIDTH, HEIGHT);
    for (const group of this.graph.groups) {
      const [gx, gy] = map(group.x, group.y);
      ctx.fillStyle = "rgba(91, 126, 245, 0.18)";
      ctx.fillRect(gx, gy, group.w * scale, group.h * scale);
    }
    for (const node of this.graph.nodes.values()) {
      const { w, h } = this.#size(node.id);
      const [nx, ny] = map(node.x, node.y);
      ctx.fillStyle = this.canvas.selected.has(node.id) ? "#7c9cff" : node.mode ? "#5a4466" : "#6b7384";
      ctx.fillRect(nx, ny, Math.max(1.5, w * scale), Math.max(1.5, h * scale));
    }
    const { x, y, zoom } = this.canvas.view;
    const [vx, vy] = map(-x / zoom, -y / zoom);
    ctx.strokeStyle = "#e6e9ef";
    ctx.lineWidth = 1;
    ctx.strokeRect(vx + 0.5, vy + 0.5, (rect.width / zoom) * scale - 1, (rect.height / zoom) * scale - 1);
  }
}
