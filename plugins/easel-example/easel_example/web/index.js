// Editor asset of the easel-example plugin: a "palette" widget that shows the colours
// of a Palette node as swatches while you type them.

function swatches(text) {
  return String(text ?? "").split(/[,;]/).map((c) => c.trim()).filter(Boolean).map((c) => {
    const parts = c.split(/\s+/);
    const swatch = document.createElement("span");
    swatch.className = "example-swatch";
    swatch.title = c;
    swatch.style.background = parts.length === 3 ? `rgb(${parts.join(",")})` : c;
    return swatch;
  });
}

export function setup(editor) {
  editor.registerWidget("palette", (spec, value, change) => {
    const box = document.createElement("div");
    box.className = "example-palette";
    const text = document.createElement("textarea");
    text.className = "w-text";
    text.rows = 2;
    text.spellcheck = false;
    text.value = value ?? spec.default ?? "";
    const strip = document.createElement("div");
    strip.className = "example-swatches";
    strip.replaceChildren(...swatches(text.value));
    text.addEventListener("input", () => strip.replaceChildren(...swatches(text.value)));
    text.addEventListener("change", () => change(text.value));
    box.append(text, strip);
    return box;
  });
  editor.canvas.render();
}
