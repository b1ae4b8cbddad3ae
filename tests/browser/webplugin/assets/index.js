// Test plugin asset: a "colour" widget, and every editor hook, each leaving a visible trace.
export function setup(editor) {
  editor.registerWidget("colour", (spec, value, change) => {
    const input = document.createElement("input");
    input.type = "color";
    input.className = "plugin-colour";
    input.value = value || "#000000";
    input.addEventListener("change", () => change(input.value));
    return input;
  });
  editor.setSocketColor("INT", "rgb(1, 2, 3)");
  editor.onNodeDefined((schema) => {
    if (schema.type === "TestColor") schema.display_name = "Colour (plugin)";
  });
  const executed = [];
  editor.onNodeExecuted((id, ui) => {
    executed.push(id);
    document.body.dataset.executed = executed.join(",");
    if (ui && ui.colour) document.body.dataset.lastColour = ui.colour;
  });
  editor.addContextMenuItem({
    label: "Make it blue",
    when: (node) => node.type === "TestColor",
    action: (node) => editor.setValue(node.id, "colour", "#0000ff"),
  });
  editor.on("run_started", (message) => { document.body.dataset.runStarted = message.run_id; });
  document.body.dataset.testPlugin = "loaded";
  editor.canvas.render();
}
