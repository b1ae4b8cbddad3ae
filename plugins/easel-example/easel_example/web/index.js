// Editor asset of the easel-example plugin: draws a Palette node's colours as swatches.
export function setup(editor) {
  editor.addSocketColor?.("PALETTE", "#c77dff");
  editor.onNodeRendered?.("Palette", (nodeElement, node) => {
    const text = String(node.inputs?.colors ?? "");
    let strip = nodeElement.querySelector(".example-swatches");
    if (!strip) {
      strip = document.createElement("div");
      strip.className = "example-swatches";
      strip.style.cssText = "display:flex;gap:2px;padding:4px 8px";
      nodeElement.appendChild(strip);
    }
    strip.replaceChildren(...text.split(",").map((c) => c.trim()).filter(Boolean).map((c) => {
      const swatch = document.createElement("span");
      const parts = c.split(/\s+/);
      swatch.style.cssText = "width:14px;height:14px;border-radius:3px;border:1px solid #0006";
      swatch.style.background = parts.length === 3 ? `rgb(${parts.join(",")})` : c;
      return swatch;
    }));
  });
}
