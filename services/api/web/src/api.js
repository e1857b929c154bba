// The API as the page calls it: the bearer token the user pasted (kept in sessionStorage, gone with the tab),
// problem+json errors turned into readable messages, lists read page after page, exports saved as files.

const TOKEN_KEY = "telemetry.token";
const MAX_PAGES = 50; // a chart of more rows than 50 pages would be unreadable anyway

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function request(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${token.get() || ""}` } });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const problem = await response.json();
      detail = `${problem.title}: ${problem.detail}`;
    } catch {
      // not a problem document: the status text says enough
    }
    throw new ApiError(response.status, `${response.status} ${detail} (${path})`);
  }
  return response;
}

export async function get(path) {
  return (await request(path)).json();
}

/** The rows of a list answer, following page.next_offset for at most maxPages pages of 100. */
export async function getAll(path, maxPages = MAX_PAGES) {
  const rows = [];
  let offset = 0;
  let meta = {};
  for (let n = 0; n < maxPages && offset !== null; n++) {
    const sep = path.includes("?") ? "&" : "?";
    const answer = await get(`${path}${sep}limit=100&offset=${offset}`);
    rows.push(...answer.data);
    meta = answer.meta;
    offset = answer.page.next_offset;
  }
  return { rows, meta };
}

/** Fetch an export with the token and hand it to the browser as a download; its file name and size. */
export async function download(path) {
  const response = await request(path);
  const blob = await response.blob();
  const disposition = response.headers.get("content-disposition") || "";
  const name = (disposition.match(/filename="([^"]+)"/) || [])[1] || "export.csv";
  const url = URL.createObjectURL(blob);
  const anchor = document.createElement("a");
  anchor.href = url;
  anchor.download = name;
  document.body.appendChild(anchor);
  anchor.click();
  anchor.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  return { name, bytes: blob.size };
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    for (const v of Array.isArray(value) ? value : [value]) search.append(key, v);
  }
  return search.toString();
}
