// The Node and the Deno server, on the same folder, answer one request matrix identically:
// status and reason phrase, every header but Date (and the connection-level ones a runtime adds
// on its own), and the body bytes; and they write the same access log lines. Also: both break a
// download whose archive is truncated under it, instead of sending a short body as complete.
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { image, imageIndex, layer, layout, type LayoutEntry, MEDIA, packTar, ref } from "../fixtures/oci.ts";
import bcrypt from "bcryptjs";
import { ACCEPT_ALL } from "../helpers/memory-registry.ts";
import { type RunningServer, startServer } from "../helpers/server.ts";
import { describeWithDeno } from "./deno.ts";

/** Connection-level headers (RFC 9110 7.6.1) that each HTTP stack sets itself, and the date. */
const NOT_COMPARED = new Set(["date", "connection", "keep-alive", "transfer-encoding"]);

const big = image({ layers: [layer({ "big.bin": new Uint8Array(3 << 20).map((_, i) => (i * 13) % 251) }, { gzip: false }), { "x.txt": "x\n" }] });
const amd = image({ layers: [{ "a.txt": "amd64\n" }] });
const arm = image({ layers: [{ "a.txt": "arm64\n" }], platform: { architecture: "arm64", os: "linux" } });
const multi = imageIndex([amd, arm]);
const docker = image({ mediaTypes: "docker", layers: [{ "d.txt": "docker\n" }] });
const zipped = image({ layers: [{ "z.txt": "zipped\n" }] });
const redis = image({ layers: [{ "r.txt": "redis\n" }] });
const ZERO = `sha256:${"0".repeat(64)}`;

interface Probe {
  method: string;
  path: string;
  headers?: Record<string, string>;
}

function probes(): Probe[] {
  const accept = { Accept: ACCEPT_ALL };
  const layerDigest = big.layers[0].digest;
  const size = big.layers[0].size;
  const list: Probe[] = [
    { method: "GET", path: "/v2/" },
    { method: "HEAD", path: "/v2/" },
    { method: "GET", path: "/v2" },
    { method: "GET", path: "/" },
    { method: "GET", path: "/favicon.ico" },
    { method: "GET", path: "/healthz" },
    { method: "HEAD", path: "/healthz" },
    { method: "GET", path: "/readyz" },
  ];
  const manifests: [string, string][] = [
    ["big", "latest"],
    ["big", big.manifest.digest],
    ["team/app", "1"],
    ["team/app", multi.manifest.digest],
    ["team/app", amd.manifest.digest],
    ["team/app", arm.manifest.digest],
    ["team/app", "v2"],
    ["team/app", docker.manifest.digest],
    ["zipped", "latest"],
    ["redis", "7"],
  ];
  for (const [name, reference] of manifests) {
    for (const method of ["GET", "HEAD"]) list.push({ method, path: `/v2/${name}/manifests/${reference}`, headers: accept });
  }
  list.push(
    { method: "GET", path: "/v2/big/manifests/latest" }, // no Accept: negotiation refuses an OCI manifest
    { method: "GET", path: "/v2/team/app/manifests/v2" }, // Docker schema 2 is served whatever Accept says
    { method: "GET", path: "/v2/big/manifests/latest", headers: { ...accept, "If-None-Match": `"${big.manifest.digest}"` } },
    { method: "GET", path: "/v2/big/manifests/lat%65st", headers: accept },
    { method: "GET", path: "/v2/team/app/manifests/1?ns=docker.io", headers: accept },
  );
  for (const [name, blob] of [
    ["big", big.layers[0]],
    ["big", big.layers[1]],
    ["big", big.config],
    ["team/app", arm.layers[0]],
    ["team/app", docker.config],
    ["zipped", zipped.layers[0]],
    ["redis", redis.layers[0]],
  ] as const) {
    for (const method of ["GET", "HEAD"]) list.push({ method, path: `/v2/${name}/blobs/${blob.digest}` });
  }
  for (const range of ["bytes=0-9", "bytes=5-", "bytes=-7", `bytes=0-${size + 100}`, `bytes=${size - 1}-`, `bytes=${size}-`, "bytes=3-1", "bytes=0-1,10-19", "bytes=1048576-2097151", "lines=0-1"]) {
    list.push({ method: "GET", path: `/v2/big/blobs/${layerDigest}`, headers: { Range: range } });
  }
  list.push({ method: "HEAD", path: `/v2/big/blobs/${layerDigest}`, headers: { Range: "bytes=0-9" } });
  for (const path of ["/v2/big/tags/list", "/v2/team/app/tags/list", "/v2/team/app/tags/list?n=1", "/v2/team/app/tags/list?n=1&last=1", "/v2/team/app/tags/list?n=-1", "/v2/nope/tags/list"]) {
    list.push({ method: "GET", path });
  }
  // Errors.
  for (const path of [
    "/v2/nope/manifests/latest",
    "/v2/big/manifests/nope",
    `/v2/big/manifests/${ZERO}`,
    "/v2/big/manifests/sha256:xyz",
    "/v2/Big/manifests/latest",
    "/v2/big/manifests/.INVALID",
    `/v2/big/blobs/${ZERO}`,
    "/v2/big/blobs/sha256:xyz",
    `/v2/big/blobs/${arm.layers[0].digest}`, // a blob of another name
    `/v2/nope/blobs/${big.config.digest}`,
    "/v2/big/unknown",
    "/v2/_catalog",
    `/v2/big/referrers/${big.manifest.digest}`,
  ]) {
    list.push({ method: "GET", path, headers: accept }, { method: "HEAD", path, headers: accept });
  }
  for (const method of ["DELETE", "PUT", "POST", "PATCH"]) {
    list.push({ method, path: "/v2/big/manifests/latest" }, { method, path: `/v2/big/blobs/${big.config.digest}` }, { method, path: "/v2/big/blobs/uploads/" });
  }
  return list;
}

interface Answer {
  status: number;
  statusText: string;
  headers: [string, string][];
  body: Buffer;
}

async function send(base: string, probe: Probe): Promise<Answer> {
  const response = await fetch(base + probe.path, { method: probe.method, headers: probe.headers, redirect: "manual" });
  const body = Buffer.from(await response.arrayBuffer());
  // A multipart/byteranges boundary is random per response: compare it as a placeholder.
  const boundary = /boundary=([^;\s]+)/.exec(response.headers.get("content-type") ?? "")?.[1];
  const normal = (s: string) => (boundary ? s.split(boundary).join("BOUNDARY") : s);
  return {
    status: response.status,
    statusText: response.statusText,
    headers: [...response.headers].filter(([k]) => !NOT_COMPARED.has(k)).map(([k, v]) => [k, normal(v)]),
    body: boundary ? Buffer.from(normal(body.toString("latin1")), "latin1") : body,
  };
}

async function archive(dir: string, path: string, entries: LayoutEntry[], gzip = false) {
  mkdirSync(join(dir, path, ".."), { recursive: true });
  writeFileSync(join(dir, path), await packTar(layout(entries), { gzip }));
}

describeWithDeno("Node and Deno servers answer alike", () => {
  let dir: string;
  const servers: Record<string, RunningServer> = {};

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "sor-parity-"));
    await archive(dir, "big/latest.oci", [{ image: big }]);
    await archive(dir, "team/app.oci", [
      { image: multi, annotations: ref("localhost/team/app:1") },
      { image: docker, annotations: ref("team/app:v2") },
    ]);
    await archive(dir, "zipped/latest.oci", [{ image: zipped }], true);
    await archive(dir, "redis:7.oci", [{ image: redis }]);
    const [node, deno, nodeQuiet, denoQuiet] = await Promise.all([
      startServer({ dir, runtime: "node" }),
      startServer({ dir, runtime: "deno" }),
      // Without the access log, both answer manifests by a shorter path (nothing to follow).
      startServer({ dir, runtime: "node", logLevel: "warn" }),
      startServer({ dir, runtime: "deno", logLevel: "warn" }),
    ]);
    Object.assign(servers, { node, deno, nodeQuiet, denoQuiet });
    // /readyz is in the matrix: let them finish their first scan of the folder.
    for (const server of [node, deno, nodeQuiet, denoQuiet]) {
      for (let i = 0; i < 200 && (await fetch(`${server.url}/readyz`)).status !== 200; i++) await new Promise((r) => setTimeout(r, 50));
    }
  }, 120_000);

  afterAll(async () => {
    await Promise.all(Object.values(servers).map((s) => s.stop()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("status, headers and bytes of every request in the matrix, and the access log lines", async () => {
    const differences: string[] = [];
    const statuses = new Set<number>();
    const logStart = new Map(Object.values(servers).map((server) => [server, server.logLines().length]));
    for (const probe of probes()) {
      const label = `${probe.method} ${probe.path}${probe.headers ? ` ${JSON.stringify(probe.headers)}` : ""}`;
      const node = await send(servers.node.url, probe);
      statuses.add(node.status);
      const nodeHeaders = JSON.stringify(node.headers.sort());
      for (const other of ["deno", "nodeQuiet", "denoQuiet"]) {
        const deno = await send(servers[other].url, probe);
        if (node.status !== deno.status || node.statusText !== deno.statusText) differences.push(`${label}: node ${node.status} ${node.statusText}, ${other} ${deno.status} ${deno.statusText}`);
        const denoHeaders = JSON.stringify(deno.headers.sort());
        if (nodeHeaders !== denoHeaders) differences.push(`${label}: headers\n  node ${nodeHeaders}\n  ${other} ${denoHeaders}`);
        if (!node.body.equals(deno.body)) differences.push(`${label}: body node ${node.body.length} bytes, ${other} ${deno.body.length} bytes`);
      }
    }
    expect(differences).toEqual([]);
    // The matrix reaches every kind of answer.
    expect([...statuses].sort()).toEqual(expect.arrayContaining([200, 206, 304, 400, 404, 405, 416]));

    await new Promise((r) => setTimeout(r, 200)); // a line is written once its response is over
    const lines = (server: RunningServer) =>
      server
        .logLines()
        .slice(logStart.get(server))
        .filter((l) => l.msg === "request")
        .map(({ method, path, status, bytes, remote, aborted }) => JSON.stringify({ method, path, status, bytes, remote, aborted }));
    const node = lines(servers.node);
    const deno = lines(servers.deno);
    expect(node.length).toBeGreaterThanOrEqual(probes().length - 2);
    expect({ onlyNode: node.filter((l) => !deno.includes(l)), onlyDeno: deno.filter((l) => !node.includes(l)) }).toEqual({ onlyNode: [], onlyDeno: [] });
    const keys = (server: RunningServer) => Object.keys(server.logLines().find((l) => l.msg === "request")!).sort();
    expect(keys(servers.deno)).toEqual(keys(servers.node));
  });
});

describeWithDeno("Node and Deno servers answer alike with --htpasswd and --metrics-port", () => {
  let dir: string;
  const servers: Record<string, RunningServer> = {};
  const basic = (user: string, password: string) => ({ Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`, Accept: ACCEPT_ALL });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "sor-parity-auth-"));
    await archive(dir, "big/latest.oci", [{ image: big }]);
    writeFileSync(join(dir, ".htpasswd"), `alice:${bcrypt.hashSync("secret", 4)}\n`);
    const args = ["--htpasswd", join(dir, ".htpasswd"), "--auth-realm", "parity", "--metrics-port", "0"];
    const probe = async (port: number) => {
      const response = await fetch(`http://127.0.0.1:${port}/v2/`, { headers: basic("alice", "secret"), signal: AbortSignal.timeout(2000) });
      await response.arrayBuffer();
      return response.status;
    };
    const [node, deno] = await Promise.all([startServer({ dir, runtime: "node", args, probe }), startServer({ dir, runtime: "deno", args, probe })]);
    servers.node = node;
    servers.deno = deno;
  }, 120_000);

  afterAll(async () => {
    await Promise.all(Object.values(servers).map((s) => s.stop()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("answer 401 alike without or with wrong credentials, and serve with the right ones", async () => {
    const matrix: Probe[] = [
      { method: "GET", path: "/v2/" },
      { method: "HEAD", path: "/v2/" },
      { method: "GET", path: "/v2/", headers: basic("alice", "wrong") },
      { method: "GET", path: "/v2/", headers: basic("bob", "secret") },
      { method: "GET", path: "/v2/", headers: basic("alice", "secret") },
      { method: "GET", path: "/v2/big/manifests/latest", headers: { Accept: ACCEPT_ALL } },
      { method: "GET", path: "/v2/big/manifests/latest", headers: basic("alice", "secret") },
      { method: "HEAD", path: `/v2/big/blobs/${big.config.digest}`, headers: basic("alice", "secret") },
      { method: "GET", path: "/healthz" }, // on --metrics-port, not here
    ];
    const differences: string[] = [];
    const statuses: number[] = [];
    for (const probe of matrix) {
      const [node, deno] = [await send(servers.node.url, probe), await send(servers.deno.url, probe)];
      statuses.push(node.status);
      if (JSON.stringify(node) !== JSON.stringify(deno)) differences.push(`${probe.method} ${probe.path} ${JSON.stringify(probe.headers)}:\n  node ${JSON.stringify(node)}\n  deno ${JSON.stringify(deno)}`);
    }
    expect(differences).toEqual([]);
    expect(statuses).toEqual([401, 401, 401, 401, 200, 401, 200, 200, 404]);
  });

  it("serve /healthz and /readyz on --metrics-port alike, and say where in the listening line", async () => {
    const operations = (server: RunningServer) => server.logLines().find((l) => l.msg === "listening")!.operations as string;
    for (const path of ["/healthz", "/readyz"]) {
      const [node, deno] = [await send(operations(servers.node), { method: "GET", path }), await send(operations(servers.deno), { method: "GET", path })];
      expect(deno).toEqual(node);
      expect(node.status).toBe(200);
    }
    const metrics = await fetch(`${operations(servers.deno)}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toMatch(/^# (HELP|TYPE) /m);
  });
});

describeWithDeno("a download whose archive is truncated under it", () => {
  // Larger than what loopback socket buffers take ahead of a reader that stops after one chunk.
  const huge = image({ layers: [layer({ "huge.bin": new Uint8Array(32 << 20).fill(7) }, { gzip: false })] });
  for (const runtime of ["node", "deno"]) {
    it(`${runtime}: fails on the client, with the server's warning, and the server keeps serving`, async () => {
      const dir = mkdtempSync(join(tmpdir(), "sor-truncate-"));
      const server = await startServer({ dir, runtime, args: ["--rescan-interval", "0"] });
      try {
        await archive(dir, "big/latest.oci", [{ image: huge }]);
        const res = await fetch(`${server.url}/v2/big/blobs/${huge.layers[0].digest}`);
        expect(res.status).toBe(200);
        const reader = res.body!.getReader();
        let received = (await reader.read()).value!.length;
        truncateSync(join(dir, "big/latest.oci"), 4096);
        await expect(
          (async () => {
            for (let r = await reader.read(); !r.done; r = await reader.read()) received += r.value.length;
          })(),
        ).rejects.toThrow();
        expect(received).toBeLessThan(huge.layers[0].size);
        expect((await fetch(`${server.url}/v2/`)).status).toBe(200);
        await new Promise((r) => setTimeout(r, 100));
        expect(server.logLines().some((l) => l.msg === "response aborted")).toBe(true);
        expect(server.logLines().find((l) => l.msg === "request" && l.path === `/v2/big/blobs/${huge.layers[0].digest}`)).toMatchObject({ aborted: true });
      } finally {
        await server.stop();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
