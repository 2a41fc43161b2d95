/**
 * Property-based tests of the fetch handler over the in-memory file system: random methods,
 * paths (built from registry words, traversal spellings and random text), query strings,
 * headers and ranges. No exception escapes; no 5xx unless an I/O fault was injected; every
 * error carries the OCI envelope; every complete 200/206 body has its announced length, and a
 * complete blob or manifest body matches its digest.
 */
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { image, imageIndex, layer, layout, packTar, ref, sha256 } from "../fixtures/oci.ts";
import { memoryRegistry, type MemoryRegistry } from "../helpers/memory-registry.ts";
import { runs, SEED, timeoutFor } from "./config.ts";

const app = image({ layers: [layer({ "a.bin": new Uint8Array(150_000).map((_, i) => i % 253) }, { gzip: false })] });
const arm = image({ layers: [{ "arm.txt": "arm\n" }], platform: { architecture: "arm64", os: "linux" } });
const multi = imageIndex([app, arm]);
const zipped = image({ layers: [{ "z.txt": "zipped\n" }] });
const DIGESTS = [app.manifest.digest, app.config.digest, app.layers[0].digest, arm.manifest.digest, multi.manifest.digest, zipped.layers[0].digest, `sha256:${"0".repeat(64)}`];

let r: MemoryRegistry;
beforeAll(async () => {
  r = memoryRegistry();
  r.images.set("app/latest.oci", await packTar(layout([{ image: app }])));
  r.images.set("team/multi.oci", await packTar(layout([{ index: multi, annotations: ref("v1") }]), { prefix: "./" }));
  r.images.set("zipped:1.oci", await packTar(layout([{ image: zipped }]), { gzip: true }));
  r.images.set("broken.oci", new Uint8Array(2048).fill(7));
});

const word = fc.constantFrom(
  "v2", "app", "team", "multi", "zipped", "broken", "manifests", "blobs", "tags", "list", "latest", "v1", "1", "_catalog", "referrers",
  "..", ".", "%2e%2e", "%2E%2e", "%2f", "%2F", "%5c", "%00", "\\", "*", "?", "[a]", "{x,y}", "~", "%", "%zz", ":", "sha256:", "", "a".repeat(300),
  ...DIGESTS,
);
const segment = fc.oneof({ weight: 6, arbitrary: word }, { weight: 1, arbitrary: fc.string({ maxLength: 12 }) }, { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 6 }) });
const TAGS: Record<string, string[]> = { app: ["latest"], "team/multi": ["v1"], zipped: ["1"], broken: ["latest"] };
const path = fc.oneof(
  // Real requests (most succeed)...
  {
    weight: 3,
    arbitrary: fc.tuple(fc.constantFrom("app", "team/multi", "zipped", "broken"), fc.constantFrom("manifests", "blobs", "blobs", "tags"), fc.nat()).map(([n, kind, i]) => {
      if (kind === "tags") return `/v2/${n}/tags/list`;
      const refs = kind === "blobs" ? DIGESTS : [...TAGS[n], ...DIGESTS];
      return `/v2/${n}/${kind}/${refs[i % refs.length]}`;
    }),
  },
  // ...shaped like the API...
  {
    weight: 3,
    arbitrary: fc.tuple(fc.constantFrom("app", "team/multi", "zipped", "broken", "nope", "team"), fc.constantFrom("manifests", "blobs", "tags"), fc.oneof(word, fc.string({ maxLength: 20 }))).map(
      ([n, kind, ref]) => (kind === "tags" ? `/v2/${n}/tags/list` : `/v2/${n}/${kind}/${ref}`),
    ),
  },
  // ...or anything made of its words.
  { weight: 2, arbitrary: fc.array(segment, { maxLength: 8 }).map((segs) => `/${segs.join("/")}`) },
);
const query = fc.option(
  fc.array(fc.tuple(fc.constantFrom("n", "last", "ns", "artifactType", "x", ""), fc.oneof(fc.constantFrom("0", "1", "-1", "1e9", "99999999999999999999", "abc", "", "..%2f.."), fc.string({ maxLength: 10 }))), { maxLength: 3 }).map(
    (pairs) => `?${pairs.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join("&")}`,
  ),
  { nil: "" },
);
const rangeValue = fc.oneof(
  fc.tuple(fc.nat({ max: 200_000 }), fc.nat({ max: 200_000 })).map(([a, b]) => `bytes=${a}-${b}`),
  fc.nat({ max: 200_000 }).map((a) => `bytes=${a}-`),
  fc.nat({ max: 200_000 }).map((n) => `bytes=-${n}`),
  fc.array(fc.tuple(fc.nat({ max: 200_000 }), fc.nat({ max: 200_000 })), { minLength: 2, maxLength: 40 }).map((rs) => `bytes=${rs.map(([a, b]) => `${a}-${b}`).join(",")}`),
  fc.constantFrom("bytes=", "bytes=-", "bytes=--1", "bytes=1-2-3", "items=0-1", "bytes=99999999999999999999-", "bytes=0-0", "bytes = 0 - 5", "BYTES=0-1", ""),
  fc.string({ maxLength: 30 }),
);
const headerValue = fc.string({ maxLength: 40 }).filter((v) => !/[\r\n\0]/.test(v));
const headers = fc.record(
  {
    Range: rangeValue,
    Accept: fc.oneof(fc.constantFrom("*/*", "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json", "application/json", ""), headerValue),
    Authorization: fc.oneof(fc.constantFrom("Basic Zm9vOmJhcg==", "Bearer x", "Basic", "Basic !!!"), headerValue),
    "If-None-Match": headerValue,
    "X-Random": headerValue,
  },
  { requiredKeys: [] },
);
const method = fc.oneof({ weight: 8, arbitrary: fc.constantFrom("GET", "HEAD") }, { weight: 2, arbitrary: fc.constantFrom("PUT", "POST", "DELETE", "PATCH", "OPTIONS") }, { weight: 1, arbitrary: fc.constantFrom("PROPFIND", "TRACE", "X") });
const request = fc.record({ method, path, query, headers });

const statuses = new Map<number, number>();

interface Outcome {
  status: number;
  length: number;
  complete: boolean;
}

async function send(req: { method: string; path: string; query: string; headers: Record<string, string> }): Promise<Outcome | "not a request"> {
  let request: Request;
  try {
    const h = new Headers();
    for (const [k, v] of Object.entries(req.headers)) h.set(k, v);
    request = new Request(`http://registry.test${req.path}${req.query}`, { method: req.method, headers: h });
  } catch {
    return "not a request"; // fetch would refuse to send it too
  }
  const res = await r.registry.fetch(request); // must not throw
  const chunks: Uint8Array[] = [];
  let complete = true;
  try {
    const reader = res.body?.getReader();
    if (reader) for (let x = await reader.read(); !x.done; x = await reader.read()) chunks.push(x.value);
  } catch {
    complete = false; // an aborted body (only with injected faults)
  }
  const body = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) body.set(c, at), (at += c.length);
  if (res.status >= 400 && request.method !== "HEAD") {
    const json = JSON.parse(new TextDecoder().decode(body));
    expect(Array.isArray(json.errors), `${res.status} ${req.path}`).toBe(true);
    expect(typeof json.errors[0].code).toBe("string");
    expect(typeof json.errors[0].message).toBe("string");
  }
  const announced = res.headers.get("content-length");
  if (complete && announced !== null && request.method !== "HEAD") expect(body.length, `${req.method} ${req.path}`).toBe(Number(announced));
  const digest = res.headers.get("docker-content-digest");
  if (complete && res.status === 200 && request.method === "GET" && digest && !res.headers.get("content-type")?.startsWith("multipart/")) {
    expect(sha256(body), `${req.path}`).toBe(digest);
  }
  return { status: res.status, length: body.length, complete };
}

describe("fuzz: the fetch handler", () => {
  const plain = runs(2000);
  it(
    `never throws, never 5xx, always the OCI envelope (${plain} runs)`,
    async () => {
      await fc.assert(
        fc.asyncProperty(request, async (req) => {
          const out = await send(req);
          if (out === "not a request") return;
          statuses.set(out.status, (statuses.get(out.status) ?? 0) + 1);
          expect(out.status, `${req.method} ${req.path}${req.query}`).toBeLessThan(500);
          expect(out.complete).toBe(true);
        }),
        { numRuns: plain, seed: SEED },
      );
      // FUZZ_STATS=1 shows how the cases spread over answers (to keep the generators honest).
      if (process.env.FUZZ_STATS) console.log("statuses", JSON.stringify(Object.fromEntries(statuses)));
      expect(r.images.openStreams).toBe(0);
      expect(r.cache.openStreams).toBe(0);
    },
    timeoutFor(plain, 2),
  );

  const faulty = runs(1000);
  it(
    `with injected I/O faults: 500 only then, still the envelope, nothing left open (${faulty} runs)`,
    async () => {
      await fc.assert(
        fc.asyncProperty(request, fc.constantFrom("stat", "list", "read", "stream", "pull"), fc.nat({ max: 3 }), async (req, op, every) => {
          let calls = 0;
          let injected = false;
          r.images.faults = (o) => {
            if (o !== op || calls++ % (every + 1) !== every) return undefined;
            injected = true;
            return Object.assign(new Error(`EIO: injected ${o}`), { code: "EIO" });
          };
          try {
            const out = await send(req);
            if (out === "not a request") return;
            if (!injected) {
              expect(out.status).toBeLessThan(500);
              expect(out.complete).toBe(true);
            } else expect(out.status).toBeLessThanOrEqual(500);
          } finally {
            r.images.faults = undefined;
          }
        }),
        { numRuns: faulty, seed: SEED },
      );
      expect(r.images.openStreams).toBe(0);
      // Everything is served again once the faults stop.
      const res = await r.get("/v2/app/manifests/latest");
      expect(res.status).toBe(200);
    },
    timeoutFor(faulty, 3),
  );
});
