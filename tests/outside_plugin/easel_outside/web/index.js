// Editor asset of the "outside" plugin: stencil sockets get a colour, TextShout nodes a menu entry.
export function setup(editor) {
  editor.setSocketColor("OUTSIDE.STENCIL", "#d4a017");
  editor.onNodeDefined((schema) => {
    if (schema.type === "MakeStencil") schema.description += " (outside plugin)";
  });
  editor.addContextMenuItem({
    label: "Title case",
    when: (node) => node.type === "TextShout",
    action: (node) => editor.setValue(node.id, "style", "title"),
  });
  editor.onNodeExecuted((id, ui) => { if (ui && ui.text) editor.toast(`${id}: ${ui.text}`); });
  editor.on("outside.stencil_made", (message) => editor.toast(`stencil with ${message.rows} rows`));
}
