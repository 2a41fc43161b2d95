/**
 * The broken-archive corpus (corpus.ts) in one folder next to good archives: each broken file
 * gets one clear log line naming the file and the problem, its images answer an OCI error, its
 * intact images and every other file keep being served, and nothing throws or answers 5xx.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decompressedAllowance } from "../../core/limits.ts";
import { memoryRegistry, type MemoryRegistry } from "../helpers/memory-registry.ts";
import { type BrokenCase, brokenCorpus, good, goodArchive } from "./corpus.ts";
import { get, MANIFEST_TYPES, rawRequest, type TempServer, tempServer } from "./helpers.ts";

const LIMITS = { maxDecompressedBytes: 150 << 20 };

let corpus: BrokenCase[];
let good1: Uint8Array;
beforeAll(async () => {
  corpus = await brokenCorpus();
  good1 = await goodArchive();
}, 120_000);

const problemsOf = (logs: Array<{ level: string; msg: string; fields?: Record<string, unknown> }>, file: string) =>
  logs.filter((l) => (l.level === "error" || l.level === "warn") && l.fields?.file === file && /archive unusable|image unservable/.test(l.msg));

async function drain(res: Response): Promise<{ ok: boolean; bytes: number }> {
  let bytes = 0;
  try {
    const reader = res.body?.getReader();
    if (reader) for (let r = await reader.read(); !r.done; r = await reader.read()) bytes += r.value.length;
    return { ok: true, bytes };
  } catch {
    return { ok: false, bytes };
  }
}

describe("broken-archive corpus through the fetch handler", () => {
  let r: MemoryRegistry;
  beforeAll(() => {
    r = memoryRegistry({ limits: LIMITS });
    r.images.set("good.oci", good1);
    r.images.set("team/good.oci", good1);
    for (const c of corpus) r.images.set(`${c.name}.oci`, c.bytes);
    // The same broken files as candidates of a name that also has a good file: the good one serves.
    for (const c of corpus) if (!c.served?.length && c.problem.source !== "^$" && c.name !== "deep-index") r.images.set(`mixed/${c.name}.oci`, c.bytes);
    r.images.set("mixed/zzz-good.oci", good1);
  });

  it("has every case (sanity)", () => {
    expect(corpus.length).toBeGreaterThanOrEqual(44);
  });

  it.each([0])("each broken file: an OCI error for its images, one clear log line, intact images served", async () => {
    for (const c of corpus) {
      const file = `${c.name}.oci`;
      for (const tag of c.broken ?? ["latest"]) {
        const res = await r.get(`/v2/${c.name}/manifests/${tag}`);
        expect(res.status, `${c.label}: ${tag}`).toBeGreaterThanOrEqual(400);
        expect(res.status, `${c.label}: ${tag}`).toBeLessThan(500);
        const body = await res.json();
        expect(body.errors[0].code, c.label).toMatch(/MANIFEST_UNKNOWN|NAME_UNKNOWN/);
      }
      for (const tag of c.served ?? []) {
        const res = await r.get(`/v2/${c.name}/manifests/${tag}`);
        expect(res.status, `${c.label}: ${tag} still served`).toBe(200);
        // And every blob of it: complete and right, or aborted; never complete and wrong.
        const manifest = await res.json();
        for (const d of [manifest.config, ...(manifest.layers ?? [])].filter(Boolean)) {
          const blob = await r.get(`/v2/${c.name}/blobs/${d.digest}`);
          if (blob.status !== 200) continue;
          const { ok, bytes } = await drain(blob);
          if (ok) expect(bytes, `${c.label}: ${d.digest}`).toBe(d.size);
        }
      }
      const lines = problemsOf(r.logs, file);
      if (c.problem.source === "^$") {
        expect(lines.filter((l) => l.msg === "archive unusable"), c.label).toEqual([]);
      } else {
        expect(lines.length, `${c.label}: a log line naming ${file}`).toBeGreaterThan(0);
        expect(lines.some((l) => c.problem.test(String(l.fields?.problem))), `${c.label}: ${JSON.stringify(lines.map((l) => l.fields?.problem))}`).toBe(true);
      }
    }
  }, 120_000);

  it("an index.json full of broken images does not flood the log", () => {
    expect(problemsOf(r.logs, "index-flood.oci").length).toBeLessThanOrEqual(21);
  });

  it("a broken file is indexed (and logged) once, not on every request", async () => {
    const c = corpus.find((x) => x.name === "bad-checksum")!;
    const before = problemsOf(r.logs, `${c.name}.oci`).length;
    for (let i = 0; i < 5; i++) await (await r.get(`/v2/${c.name}/manifests/latest`)).arrayBuffer();
    expect(problemsOf(r.logs, `${c.name}.oci`).length).toBe(before);
  });

  it("good archives next to the corpus are served, blobs included", async () => {
    for (const name of ["good", "team", "mixed"]) {
      const res = await r.get(`/v2/${name}/manifests/latest`);
      expect(res.status, name).toBe(200);
      expect(res.headers.get("docker-content-digest")).toBe(good.manifest.digest);
      const blob = await r.get(`/v2/${name}/blobs/${good.layers[0].digest}`);
      expect(blob.status).toBe(200);
      expect((await drain(blob)).bytes).toBe(good.layers[0].size);
    }
    expect(r.images.openStreams).toBe(0);
  });

  it("tags/list of a name with broken candidates lists what works, and never fails", async () => {
    const res = await r.get("/v2/mixed/tags/list");
    expect(res.status).toBe(200);
    expect((await res.json()).tags).toContain("latest");
  });

  it("nothing broken wrote outside the cache's blobs/ folder", async () => {
    const all = await r.cache.list("");
    expect((all ?? []).filter((n) => n !== "blobs")).toEqual([]);
  });
});

describe("gzip bomb limits", () => {
  it("the ratio limit applies past the first GiB", () => {
    expect(decompressedAllowance(10 << 20, 64 * 2 ** 30, 100)).toBe(2 ** 30);
    expect(decompressedAllowance(100 << 20, 64 * 2 ** 30, 100)).toBe(100 * (100 << 20));
    expect(decompressedAllowance(1 << 30, 64 * 2 ** 30, 100)).toBe(64 * 2 ** 30);
    expect(decompressedAllowance(10 << 20, 64 * 2 ** 30, 0)).toBe(64 * 2 ** 30);
  });

  it("a bomb stops at the limit and leaves no partial blob in the cache", async () => {
    const r = memoryRegistry({ limits: LIMITS });
    const bomb = corpus.find((c) => c.name === "gzip-bomb")!;
    r.images.set("bomb.oci", bomb.bytes);
    const res = await r.get("/v2/bomb/manifests/latest");
    expect(res.status).toBe(404);
    expect(problemsOf(r.logs, "bomb.oci")[0]?.fields?.problem).toMatch(/more than 157286400 bytes once decompressed/);
    expect((await r.cache.list("blobs/sha256")) ?? []).toEqual([]);
  });
});

describe("broken-archive corpus through the Node server", () => {
  let t: TempServer;
  beforeAll(async () => {
    t = await tempServer({ limits: LIMITS });
    t.write("good.oci", good1);
    for (const c of corpus) t.write(`${c.name}.oci`, c.bytes);
  }, 120_000);
  afterAll(() => t?.close());

  it("answers every broken file with a 4xx OCI error and keeps serving the good one", async () => {
    for (const c of corpus) {
      for (const tag of c.broken ?? ["latest"]) {
        const res = await rawRequest(t.port, get(`/v2/${c.name}/manifests/${tag}`, { Accept: MANIFEST_TYPES }), 60_000);
        expect(res.status, c.label).toBeGreaterThanOrEqual(400);
        expect(res.status, c.label).toBeLessThan(500);
        expect(JSON.parse(res.body.toString()).errors[0].code).toBeTypeOf("string");
      }
      for (const tag of c.served ?? []) {
        const res = await rawRequest(t.port, get(`/v2/${c.name}/manifests/${tag}`, { Accept: MANIFEST_TYPES }));
        expect(res.status, `${c.label}: ${tag}`).toBe(200);
      }
      const ok = await rawRequest(t.port, get("/v2/good/manifests/latest", { Accept: MANIFEST_TYPES }));
      expect(ok.status, `after ${c.label}`).toBe(200);
    }
    for (const c of corpus.filter((x) => x.problem.source !== "^$")) {
      expect(t.logs.some((l) => l.file === `${c.name}.oci` && c.problem.test(String(l.problem))), c.label).toBe(true);
    }
    expect(t.logs.filter((l) => l.msg === "request failed" || l.msg === "unhandled")).toEqual([]);
  }, 120_000);
});
