// The mask editor of an uploaded image (LoadImage): paint or erase the area to inpaint,
// then save it as a new upload whose alpha is 0 where painted. LoadImage's MASK output is
// 1 where the image is transparent, so the painted area is what inpainting redraws
// (ComfyUI's mask editor stores its mask the same way).

import { api, uploadUrl } from "./api.js";
import { elem } from "./dom.js";

const MASK_TINT = "rgba(255, 64, 96, 1)"; // how painted pixels look over the image
const MIN_VIEW = 512; // small images are shown this large (pixels, longer side)

export class MaskEditor {
  constructor({ toast }) {
    this.toast = toast;
    this.dialog = elem("dialog", { id: "dlg-mask", class: "mask-editor" });
    this.image = elem("canvas", { class: "mask-image" });
    this.mask = elem("canvas", { class: "mask-paint" });
    this.stage = elem("div", { class: "mask-stage" }, this.image, this.mask);
    this.size = elem("input", { type: "range", min: "1", max: "200", value: "24", "aria-label": "Brush size" });
    this.sizeLabel = elem("span", { class: "mask-size", text: "24 px" });
    this.paint = elem("button", { type: "button", class: "active", "data-tool": "paint", text: "Paint" });
    this.erase = elem("button", { type: "button", "data-tool": "erase", text: "Erase" });
    const clear = elem("button", { type: "button", "data-action": "clear", text: "Clear" });
    const cancel = elem("button", { type: "button", "data-action": "cancel", text: "Cancel" });
    this.saveButton = elem("button", { type: "button", class: "primary", "data-action": "save", text: "Save mask" });
    const tools = elem("div", { class: "mask-tools" }, this.paint, this.erase,
      elem("label", {}, "Brush ", this.size), this.sizeLabel, clear);
    this.dialog.append(elem("h2", { text: "Mask: paint what to inpaint" }), tools, this.stage,
      elem("div", { class: "dialog-actions" }, cancel, this.saveButton));
    document.body.append(this.dialog);

    this.tool = "paint";
    for (const button of [this.paint, this.erase]) {
      button.addEventListener("click", () => this.setTool(button.dataset.tool));
    }
    this.size.addEventListener("input", () => { this.sizeLabel.textContent = `${this.size.value} px`; });
    clear.addEventListener("click", () => this.clear());
    cancel.addEventListener("click", () => this.dialog.close());
    this.saveButton.addEventListener("click", () => this.save());
    this.mask.addEventListener("pointerdown", (e) => this.#down(e));
    this.mask.addEventListener("pointermove", (e) => this.#move(e));
    this.mask.addEventListener("pointerup", () => { this.last = null; });
    this.mask.addEventListener("pointerleave", () => { this.last = null; });
  }

  setTool(tool) {
    this.tool = tool;
    this.paint.classList.toggle("active", tool === "paint");
    this.erase.classList.toggle("active", tool === "erase");
  }

  /** Edit the mask of upload `name`; `done(newName)` receives the saved upload. */
  async open(name, done) {
    this.name = name;
    this.done = done;
    const img = new Image();
    img.src = uploadUrl(name);
    try { await img.decode(); } catch { this.toast(`Cannot read the image ${name}`, "error"); return; }
    const { naturalWidth: w, naturalHeight: h } = img;
    for (const canvas of [this.image, this.mask]) { canvas.width = w; canvas.height = h; }
    const ictx = this.image.getContext("2d", { willReadFrequently: true });
    ictx.clearRect(0, 0, w, h);
    ictx.drawImage(img, 0, 0);
    // The mask it has already: its transparent pixels.
    const pixels = ictx.getImageData(0, 0, w, h);
    const mctx = this.mask.getContext("2d", { willReadFrequently: true });
    const mask = mctx.createImageData(w, h);
    for (let i = 0; i < pixels.data.length; i += 4) {
      const a = 255 - pixels.data[i + 3];
      mask.data.set([255, 64, 96, a], i);
      pixels.data[i + 3] = 255; // show the picture under its mask
    }
    ictx.putImageData(pixels, 0, 0);
    mctx.putImageData(mask, 0, 0);
    // As large as fits; small images are enlarged up to 512 px on their longer side.
    const scale = Math.min((window.innerWidth * 0.8) / w, (window.innerHeight * 0.65) / h,
                           Math.max(1, MIN_VIEW / Math.max(w, h)));
    this.stage.style.width = `${Math.round(w * scale)}px`;
    this.stage.style.height = `${Math.round(h * scale)}px`;
    this.setTool("paint");
    this.dialog.showModal();
  }

  clear() {
    this.mask.getContext("2d").clearRect(0, 0, this.mask.width, this.mask.height);
  }

  #point(e) {
    const rect = this.mask.getBoundingClientRect();
    return { x: (e.clientX - rect.left) * (this.mask.width / rect.width),
             y: (e.clientY - rect.top) * (this.mask.height / rect.height),
             scale: this.mask.width / rect.width };
  }

  #down(e) {
    e.preventDefault();
    this.mask.setPointerCapture?.(e.pointerId);
    this.last = this.#point(e);
    this.#stroke(this.last, this.last);
  }

  #move(e) {
    if (!this.last || !(e.buttons & 1)) return;
    const p = this.#point(e);
    this.#stroke(this.last, p);
    this.last = p;
  }

  #stroke(a, b) {
    const ctx = this.mask.getContext("2d");
    ctx.globalCompositeOperation = this.tool === "erase" ? "destination-out" : "source-over";
    ctx.strokeStyle = ctx.fillStyle = MASK_TINT;
    ctx.lineCap = "round";
    ctx.lineWidth = Number(this.size.value) * a.scale; // the brush size is in screen pixels
    ctx.beginPath();
    ctx.moveTo(a.x, a.y);
    ctx.lineTo(b.x + 0.01, b.y);
    ctx.stroke();
    ctx.globalCompositeOperation = "source-over";
  }

  /** The image with alpha 0 where painted (255 elsewhere), uploaded as a new PNG. */
  async save() {
    const { width: w, height: h } = this.image;
    const out = elem("canvas");
    out.width = w; out.height = h;
    const pixels = this.image.getContext("2d").getImageData(0, 0, w, h);
    const mask = this.mask.getContext("2d").getImageData(0, 0, w, h).data;
    for (let i = 0; i < pixels.data.length; i += 4) pixels.data[i + 3] = 255 - mask[i + 3];
    out.getContext("2d").putImageData(pixels, 0, 0);
    const blob = await new Promise((resolve) => out.toBlob(resolve, "image/png"));
    const stem = this.name.replace(/\.[^.]+$/, "").replace(/-mask(-\d+)?$/, "");
    this.saveButton.disabled = true;
    try {
      const stored = await api.upload(new File([blob], `${stem}-mask.png`, { type: "image/png" }));
      this.dialog.close();
      this.done(stored.name);
      this.toast(`Mask saved as ${stored.name}`, "info");
    } catch (err) {
      this.toast(`Mask not saved: ${err.message}`, "error");
    } finally {
      this.saveButton.disabled = false;
    }
  }
}
