// Widgets drawn from an input's schema: numbers, text, dropdowns, checkboxes, seeds, uploads.

import { api, uploadUrl } from "./api.js";
import { elem as el } from "./dom.js";

const MAX_SEED = 2 ** 53 - 1; // what a JavaScript number holds exactly
const custom = new Map();

/** Plugins add widgets by name (an input's `widget` in its schema). */
export function registerWidget(name, factory) { custom.set(name, factory); }

export function randomSeed(spec) {
  const high = Math.min(spec.maximum ?? MAX_SEED, MAX_SEED);
  const low = spec.minimum ?? 0;
  return low + Math.floor(Math.random() * (high - low + 1));
}

function numberWidget(spec, value, change) {
  const isInt = spec.type === "INT";
  const input = el("input", { type: "number", class: "w-number" });
  if (spec.minimum !== undefined) input.min = spec.minimum;
  if (spec.maximum !== undefined) input.max = spec.maximum;
  input.step = spec.step ?? (isInt ? 1 : "any");
  input.value = value ?? spec.default ?? "";
  input.addEventListener("change", () => {
    let number = isInt ? parseInt(input.value, 10) : parseFloat(input.value);
    if (Number.isNaN(number)) number = spec.default ?? spec.minimum ?? 0;
    if (spec.minimum !== undefined) number = Math.max(spec.minimum, number);
    if (spec.maximum !== undefined) number = Math.min(spec.maximum, number);
    input.value = number;
    change(number);
  });
  return input;
}

function seedWidget(spec, value, change, ctx) {
  const wrap = el("div", { class: "w-seed" });
  const number = numberWidget({ ...spec, step: 1 }, value, change);
  const dice = el("button", { class: "icon", title: "new random seed", type: "button", text: "↻" });
  dice.addEventListener("click", () => { const s = randomSeed(spec); number.value = s; change(s); });
  const label = el("label", { class: "w-randomize", title: "pick a new seed after each queued run" });
  const box = el("input", { type: "checkbox" });
  box.checked = ctx.randomize();
  box.addEventListener("change", () => ctx.setRandomize(box.checked));
  label.append(box, "randomize after run");
  wrap.append(el("div", { class: "w-seed-row" }, number, dice), label);
  return wrap;
}

function textWidget(spec, value, change) {
  const input = spec.multiline
    ? el("textarea", { class: "w-text", rows: "3", spellcheck: "false" })
    : el("input", { type: "text", class: "w-text" });
  if (spec.maxLength) input.maxLength = spec.maxLength;
  input.value = value ?? spec.default ?? "";
  input.addEventListener("change", () => change(input.value));
  return input;
}

function choiceWidget(spec, value, change) {
  const select = el("select", { class: "w-select" });
  const choices = [...spec.choices];
  if (value !== undefined && !choices.includes(value)) choices.unshift(value);
  for (const choice of choices) {
    const option = el("option", { text: String(choice) });
    option.value = JSON.stringify(choice);
    if (choice === value) option.selected = true;
    select.append(option);
  }
  select.addEventListener("change", () => change(JSON.parse(select.value)));
  return select;
}

function checkboxWidget(spec, value, change) {
  const label = el("label", { class: "w-check" });
  const box = el("input", { type: "checkbox" });
  box.checked = Boolean(value);
  box.addEventListener("change", () => change(box.checked));
  label.append(box, el("span", { text: box.checked ? "on" : "off" }));
  box.addEventListener("change", () => { label.lastChild.textContent = box.checked ? "on" : "off"; });
  return label;
}

function uploadWidget(spec, value, change, ctx) {
  const wrap = el("div", { class: "w-upload" });
  const select = el("select", { class: "w-select" });
  const preview = el("img", { class: "w-upload-preview", alt: "" });
  const button = el("button", { type: "button", class: "small", text: "Upload…" });
  const maskButton = el("button", { type: "button", class: "small w-mask", text: "Mask…",
                                    title: "Paint the area to inpaint (saved as the image's transparency)" });
  const file = el("input", { type: "file", accept: "image/png,image/jpeg,image/webp,image/gif,image/bmp", hidden: "" });
  const show = (name) => {
    preview.hidden = !name;
    maskButton.hidden = !name || !ctx.editMask;
    if (name) preview.src = uploadUrl(name);
  };
  const fill = async (selected) => {
    let names = [];
    try { names = (await api.uploads()).images; } catch { /* listed again next time */ }
    if (selected && !names.includes(selected)) names.unshift(selected);
    select.replaceChildren(el("option", { value: "", text: names.length ? "— choose —" : "— none —" }),
      ...names.map((n) => { const o = el("option", { text: n }); o.value = n; o.selected = n === selected; return o; }));
    show(selected);
  };
  select.addEventListener("change", () => { change(select.value); show(select.value); });
  button.addEventListener("click", () => file.click());
  maskButton.addEventListener("click", () => ctx.editMask?.(select.value, async (name) => {
    await fill(name);
    change(name);
  }));
  file.addEventListener("change", async () => {
    if (!file.files.length) return;
    try {
      const stored = await api.upload(file.files[0]);
      await fill(stored.name);
      change(stored.name);
    } catch (err) { ctx.toast(`Upload refused: ${err.message}`, "error"); }
    file.value = "";
  });
  fill(value);
  wrap.append(el("div", { class: "w-upload-row" }, select, button, maskButton), preview, file);
  return wrap;
}

/** The widget element for one input, calling `change(value)` on edits. */
export function makeWidget(spec, value, change, ctx) {
  if (spec.widget && custom.has(spec.widget)) return custom.get(spec.widget)(spec, value, change, ctx);
  if (spec.widget === "seed") return seedWidget(spec, value, change, ctx);
  if (spec.widget === "image_upload") return uploadWidget(spec, value, change, ctx);
  if (spec.choices) return choiceWidget(spec, value, change);
  switch (spec.type) {
    case "INT": case "FLOAT": return numberWidget(spec, value, change);
    case "BOOLEAN": return checkboxWidget(spec, value, change);
    case "STRING": return textWidget(spec, value, change);
    default: return null;
  }
}
