// Loading the editor assets plugins ship: their CSS, and ES modules whose `setup(editor)` runs.

import { api } from "./api.js";

export async function loadPlugins(editor) {
  let listed;
  try { listed = await api.plugins(); } catch { return []; }
  const loaded = [];
  for (const plugin of listed.plugins) {
    for (const href of plugin.styles || []) {
      const link = document.createElement("link");
      link.rel = "stylesheet";
      link.href = href;
      link.dataset.plugin = plugin.name;
      document.head.append(link);
    }
    for (const url of plugin.modules || []) {
      try {
        const module = await import(url);
        if (typeof module.setup === "function") await module.setup(editor);
        loaded.push(url);
      } catch (err) {
        editor.toast(`Plugin ${plugin.name}: ${url} failed to load (${err.message})`, "error");
      }
    }
  }
  document.body.dataset.plugins = loaded.length;
  return loaded;
}
