// A minimal HTTP/1.1 client for the few requests the bench times itself (cold start, first
// pull): one connection per request, body kept or discarded.
import { request } from "node:http";

export const ACCEPT_MANIFESTS = [
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
].join(", ");

/** `{ status, headers, bytes, body? }`; rejects on connection errors (ECONNREFUSED while starting). */
export function fetchUrl(url, { method = "GET", headers = {}, keep = false, timeoutMs = 60_000 } = {}) {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, agent: false }, (res) => {
      let bytes = 0;
      const chunks = [];
      res.on("data", (chunk) => {
        bytes += chunk.length;
        if (keep) chunks.push(chunk);
      });
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, bytes, body: keep ? Buffer.concat(chunks) : undefined }));
      res.on("error", reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${url}: no answer in ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end();
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Retries until the server answers `url` with 200 (connection refused: not up yet). Bounded by
 * `timeoutMs` and by `alive()` turning false (the process exited).
 */
export async function waitFor(url, { timeoutMs = 30_000, headers = {}, alive = () => true, intervalMs = 2 } = {}) {
  const deadline = performance.now() + timeoutMs;
  let last = "no attempt";
  while (performance.now() < deadline) {
    if (!alive()) throw new Error(`server exited before answering ${url} (${last})`);
    try {
      const res = await fetchUrl(url, { headers, timeoutMs: Math.max(1, deadline - performance.now()) });
      if (res.status === 200) return res;
      last = `status ${res.status}`;
    } catch (e) {
      last = e.code ?? e.message;
    }
    await sleep(intervalMs);
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMs} ms (${last})`);
}
