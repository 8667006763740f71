// The node's local API (docs/api.md), called with the page's session cookie.
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function request(method, path, body) {
  const init = { method, headers: {}, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, String(e));
  }
  const v = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, (v && v.error) || res.statusText);
  return v;
}

const seg = encodeURIComponent;

export const api = {
  status: () => request("GET", "/v1/status"),
  peers: () => request("GET", "/v1/peers"),
  conversations: () => request("GET", "/v1/conversations"),
  conversation: (id) => request("GET", `/v1/conversations/${seg(id)}`),
  messages: (id, limit = 100) => request("GET", `/v1/conversations/${seg(id)}/messages?limit=${limit}`),
  send: (id, message) => request("POST", `/v1/conversations/${seg(id)}/messages`, message),
  ack: (id, msg) => request("POST", `/v1/conversations/${seg(id)}/messages/${seg(msg)}/ack`),
  read: (id, msg) => request("POST", `/v1/conversations/${seg(id)}/messages/${seg(msg)}/read`),
  rollcall: (id, msg) => request("GET", `/v1/conversations/${seg(id)}/messages/${seg(msg)}/rollcall`),
  realert: (id, msg) => request("POST", `/v1/conversations/${seg(id)}/messages/${seg(msg)}/realert`),
  create: (title, members) => request("POST", "/v1/conversations", { title, members }),
  edit: (id, msg, body) => request("PATCH", `/v1/conversations/${seg(id)}/messages/${seg(msg)}`, { body }),
  remove: (id, msg) => request("DELETE", `/v1/conversations/${seg(id)}/messages/${seg(msg)}`),
  react: (id, msg, emoji) => request("POST", `/v1/conversations/${seg(id)}/messages/${seg(msg)}/reaction`, { emoji }),
  addMember: (id, device, admin) => request("POST", `/v1/conversations/${seg(id)}/members`, admin === undefined ? { device } : { device, admin }),
  removeMember: (id, device) => request("DELETE", `/v1/conversations/${seg(id)}/members/${seg(device)}`),
  readReceipts: (id, on) => request("PUT", `/v1/conversations/${seg(id)}/read-receipts`, { on }),
  logout: () => request("POST", "/v1/logout"),
};
