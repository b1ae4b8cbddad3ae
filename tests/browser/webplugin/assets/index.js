// Test plugin asset: registers a "colour" widget and marks the page as having loaded it.
export function setup(editor) {
  editor.registerWidget("colour", (spec, value, change) => {
    const input = document.createElement("input");
    input.type = "color";
    input.className = "plugin-colour";
    input.value = value || "#000000";
    input.addEventListener("change", () => change(input.value));
    return input;
  });
  document.body.dataset.testPlugin = "loaded";
  editor.canvas.render();
}
