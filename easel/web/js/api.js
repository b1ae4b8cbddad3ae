// Talking to the server: JSON in and out, errors as ApiError with the server's message.

export class ApiError extends Error {
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.problems = (body && body.problems) || [];
  }
}

export async function request(method, path, body, headers = {}) {
  const init = { method, headers: { ...headers }, credentials: "same-origin" };
  if (body instanceof Blob || body instanceof FormData || body instanceof ArrayBuffer) {
    init.body = body;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(`cannot reach the server (${err.message})`, 0, null);
  }
  let data = null;
  const text = await response.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = { error: text.slice(0, 200) }; }
  }
  if (!response.ok) {
    throw new ApiError((data && data.error) || `${response.status} ${response.statusText}`,
      response.status, data);
  }
  return data;
}

export const api = {
  nodes: () => request("GET", "/api/nodes"),
  aliases: () => request("GET", "/api/nodes/aliases"),
  plugins: () => request("GET", "/api/plugins"),
  submit: (workflow, clientId) => request("POST", "/api/runs", { workflow, client_id: clientId }),
  runs: (query = "") => request("GET", `/api/runs${query}`),
  run: (id) => request("GET", `/api/runs/${encodeURIComponent(id)}`),
  cancel: (id) => request("DELETE", `/api/runs/${encodeURIComponent(id)}`),
  workflows: () => request("GET", "/api/workflows"),
  workflow: (name) => request("GET", `/api/workflows/${encodeURIComponent(name)}`),
  saveWorkflow: (name, wf) => request("PUT", `/api/workflows/${encodeURIComponent(name)}`, wf),
  deleteWorkflow: (name) => request("DELETE", `/api/workflows/${encodeURIComponent(name)}`),
  fromFile: (file) => request("POST", "/api/workflows/from-file", file,
    { "Content-Type": file.type || "application/octet-stream" }),
  uploads: () => request("GET", "/api/uploads"),
  upload: (file) => {
    const form = new FormData();
    form.append("image", file, file.name);
    return request("POST", "/api/uploads", form);
  },
};

export const outputUrl = (path) => "/api/outputs/" + path.split("/").map(encodeURIComponent).join("/");
export const uploadUrl = (name) => "/api/uploads/" + encodeURIComponent(name);
