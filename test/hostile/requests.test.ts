/**
 * Hostile requests: nothing a request says can reach a file outside --dir. Names, tags and
 * digests are checked against the grammar before any disk access; traversal in every spelling
 * (`..`, `%2e%2e`, `%2f`, backslashes, NUL, absolute paths, overlong names, glob characters) is
 * rejected or not found. Through the fetch handler (recording every path the core asks the
 * file system for), and through the Node server with raw request lines, since fetch and
 * `new Request` normalise URLs before they are sent.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serve, type RunningServer } from "../../adapters/node/server.ts";
import type { FileSystem } from "../../core/fs.ts";
import { MemoryFileSystem } from "../../core/memory-fs.ts";
import { createRegistry } from "../../core/registry.ts";
import { image, layout, packTar, ref } from "../fixtures/oci.ts";
import { collectingLogger, get, MANIFEST_TYPES, rawRequest } from "./helpers.ts";

const hello = image({ layers: [{ "hello.txt": "hello\n" }] });
const secret = image({ layers: [{ "secret.txt": "do not serve\n" }] });

/** Request targets, as sent on the request line (not normalised). */
const HOSTILE: string[] = [
  "/v2/../secret/manifests/latest",
  "/v2/../../secret/manifests/latest",
  "/v2/%2e%2e/secret/manifests/latest",
  "/v2/%2E%2E/secret/manifests/latest",
  "/v2/.%2e/secret/manifests/latest",
  "/v2/hello/%2e%2e/%2e%2e/secret/manifests/latest",
  "/v2/..%2fsecret/manifests/latest",
  "/v2/%2e%2e%2fsecret/manifests/latest",
  "/v2/%2e%2e%2Fsecret/manifests/latest",
  "/v2/hello%2f..%2f..%2fsecret/manifests/latest",
  "/v2/hello/..%2f..%2fsecret/manifests/latest",
  "/v2/..\\secret/manifests/latest",
  "/v2/hello\\..\\..\\secret/manifests/latest",
  "/v2/hello%5c..%5c..%5csecret/manifests/latest",
  "/v2/secret%00/manifests/latest",
  "/v2/hello/manifests/latest%00.oci",
  "/v2/hello/manifests/latest%00",
  "/v2//secret/manifests/latest",
  "/v2/%2fsecret/manifests/latest",
  "/v2/%2f%2e%2e%2fsecret/manifests/latest",
  "/v2/hello/manifests/..%2f..%2fsecret",
  "/v2/hello/manifests/..%2f..%2fsecret%2flatest",
  "/v2/hello/manifests/../../secret/manifests/latest",
  "/v2/hello/manifests/%2e%2e",
  "/v2/hello/manifests/.latest",
  "/v2/hello/manifests/..",
  "/v2/hello/blobs/sha256:..%2f..%2fsecret",
  "/v2/hello/blobs/..%2f..%2fsecret.oci",
  "/v2/hello/blobs/sha256%3a" + "0".repeat(64),
  "/v2/hello/tags/list?last=../../secret&n=5",
  "/v2/hello/manifests/latest?ns=../../secret",
  "/v2/hello/manifests/latest?ns=%2e%2e%2f%2e%2e",
  `/v2/${"a/".repeat(200)}manifests/latest`,
  `/v2/${"a".repeat(300)}/manifests/latest`,
  `/v2/hello/manifests/${"t".repeat(200)}`,
  "/v2/hello*/manifests/latest",
  "/v2/*/manifests/latest",
  "/v2/h[a-z]llo/manifests/latest",
  "/v2/{hello,secret}/manifests/latest",
  "/v2/hello/manifests/*",
  "/v2/hello/manifests/lat*",
  "/v2/hello/manifests/lat%3Fst",
  "/v2/hello/manifests/[a-z]*",
  "/v2/%C0%AE%C0%AE/secret/manifests/latest",
  "/v2/%EF%BC%8E%EF%BC%8E/secret/manifests/latest",
  "/v2/hello/manifests/latest/../../../secret/manifests/latest",
  "/v2/~/secret/manifests/latest",
  "/v2/$HOME/manifests/latest",
  "/v2/hello:latest/manifests/latest",
  "/v2/hello/manifests/latest:../../secret",
  "/v2/.oci/manifests/latest",
  "/v2/hello/.oci/manifests/x",
];

/** A FileSystem that records every path it is asked for. */
function recording(fs: FileSystem, seen: string[]): FileSystem {
  return {
    list: (p) => (seen.push(p), fs.list(p)),
    stat: (p) => (seen.push(p), fs.stat(p)),
    read: (p, o, l) => (seen.push(p), fs.read(p, o, l)),
    stream: (p, s, e, o) => (seen.push(p), fs.stream(p, s, e, o)),
  };
}

function isSafePath(p: string): boolean {
  return !p.startsWith("/") && !p.includes("\\") && !p.includes("\0") && !p.split("/").includes("..") && !/[*?[\]{}]/.test(p);
}

describe("hostile request targets through the fetch handler", () => {
  const images = new MemoryFileSystem();
  const seen: string[] = [];
  let registry: ReturnType<typeof createRegistry>;
  beforeAll(async () => {
    images.set("hello/latest.oci", await packTar(layout([{ image: hello }])));
    // (secret.oci here is inside the root: `/v2/a/../secret/...` normalises to a legitimate request for it.)
    images.set("secret.oci", await packTar(layout([{ image: secret, annotations: ref("latest") }])));
    registry = createRegistry({ images: recording(images, seen), rescanIntervalMs: 0 });
  });

  it.each(HOSTILE)("%s: 4xx with the OCI envelope, and only safe paths asked for", async (target) => {
    let request: Request;
    try {
      request = new Request(`http://registry.test${target}`, { headers: { Accept: MANIFEST_TYPES } });
    } catch {
      return; // not even a URL: never reaches the registry
    }
    seen.length = 0;
    const res = await registry.fetch(request);
    expect(res.status, target).toBeLessThan(500);
    if (res.status >= 400) {
      const body = await res.json();
      expect(Array.isArray(body.errors) && typeof body.errors[0].code === "string", target).toBe(true);
    } else {
      // Only what the URL means once normalised (`a/../hello` is `hello`; `?ns=` and `last` are data).
      await res.arrayBuffer();
      expect(new URL(request.url).pathname.startsWith("/v2/hello/") || new URL(request.url).pathname.startsWith("/v2/secret/"), target).toBe(true);
    }
    expect(seen.filter((p) => !isSafePath(p)), target).toEqual([]);
  });

  it("names, tags and digests outside the grammar cost no disk access at all", async () => {
    for (const target of [
      "/v2/HELLO/manifests/latest",
      "/v2/hello..x/manifests/latest",
      "/v2/hello/manifests/.hidden",
      "/v2/hello/blobs/sha256:xyz",
      "/v2/hello/blobs/md5:" + "0".repeat(32),
      `/v2/${"a".repeat(256)}/manifests/latest`,
      "/v2/hello%2fx/tags/list",
    ]) {
      seen.length = 0;
      const res = await registry.fetch(new Request(`http://registry.test${target}`));
      expect(res.status, target).toBeGreaterThanOrEqual(400);
      expect(res.status, target).toBeLessThan(500);
      expect(seen, target).toEqual([]);
    }
  });
});

describe("hostile request lines through the Node server", () => {
  let root: string;
  let server: RunningServer;
  let port: number;
  const { logger, logs } = collectingLogger();

  beforeAll(async () => {
    // root/secret.oci and root/secret/latest.oci sit next to --dir (root/dir): reachable only by escaping.
    root = mkdtempSync(join(tmpdir(), "sor-requests-"));
    mkdirSync(join(root, "dir/hello"), { recursive: true });
    mkdirSync(join(root, "secret"), { recursive: true });
    writeFileSync(join(root, "dir/hello/latest.oci"), await packTar(layout([{ image: hello }])));
    const secretArchive = await packTar(layout([{ image: secret, annotations: ref("latest") }]));
    writeFileSync(join(root, "secret.oci"), secretArchive);
    writeFileSync(join(root, "secret/latest.oci"), secretArchive);
    server = await serve(
      { dir: join(root, "dir"), cacheDir: join(root, "cache"), port: 0, host: "127.0.0.1", rescanIntervalMs: 0, logLevel: "debug", shutdownGraceMs: 100 } as never,
      logger,
    );
    port = Number(new URL(server.url).port);
  });
  afterAll(async () => {
    await server.close(100);
    rmSync(root, { recursive: true, force: true });
  });

  it("serves the real image (the setup works)", async () => {
    const res = await rawRequest(port, get("/v2/hello/manifests/latest", { Accept: MANIFEST_TYPES }));
    expect(res.status).toBe(200);
    expect(res.headers["docker-content-digest"]).toBe(hello.manifest.digest);
  });

  it.each(HOSTILE)("%s: never the secret, never 5xx", async (target) => {
    const res = await rawRequest(port, get(target, { Accept: MANIFEST_TYPES }));
    expect(res.status, target).toBeLessThan(500);
    // 200 only for hello itself (query strings are data: `?ns=../..` is ignored, `last` compares strings).
    if (res.status < 400) expect(new URL(target, "http://x").pathname.startsWith("/v2/hello/"), target).toBe(true);
    else expect(JSON.parse(res.body.toString() || '{"errors":[{}]}').errors, target).toBeDefined();
    expect(res.headers["docker-content-digest"]).not.toBe(secret.manifest.digest);
    expect(res.body.toString("latin1")).not.toContain("do not serve");
  });

  it.each([
    "GET http://evil.test/v2/../secret/manifests/latest HTTP/1.1",
    "GET http://localhost/v2/%2e%2e/secret/manifests/latest HTTP/1.1",
    "GET ../secret/manifests/latest HTTP/1.1",
    "GET v2/../../secret/manifests/latest HTTP/1.1",
    "GET * HTTP/1.1",
    "GET //secret.oci HTTP/1.1",
    "GET /v2/hello/manifests/latest HTTP/1.0",
    "GET /v2/hello/manifests/latest\0../../secret HTTP/1.1",
    `GET /v2/${"x".repeat(20_000)}/manifests/latest HTTP/1.1`,
    "GET /v2/secret\r\n/manifests/latest HTTP/1.1",
    "HEAD /v2/../secret/manifests/latest HTTP/1.1",
    "OPTIONS /v2/../secret/manifests/latest HTTP/1.1",
    "DELETE /v2/hello/manifests/latest HTTP/1.1",
    "PUT /v2/../secret/manifests/latest HTTP/1.1",
  ])("request line %s: never the secret, never 5xx", async (line) => {
    const res = await rawRequest(port, `${line}\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    // 0: Node's parser refused the request and closed the connection (a 400 it writes itself).
    if (res.status !== 0) {
      expect(res.status, line).toBeLessThan(500);
      expect(res.headers["docker-content-digest"]).not.toBe(secret.manifest.digest);
    }
    expect(res.body.toString("latin1")).not.toContain("do not serve");
  });

  it("logged no internal error for any of them, and still serves", async () => {
    expect(logs.filter((l) => l.level === "error")).toEqual([]);
    const res = await rawRequest(port, get("/v2/hello/manifests/latest", { Accept: MANIFEST_TYPES }));
    expect(res.status).toBe(200);
  });
});
