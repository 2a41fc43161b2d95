#!/usr/bin/env node
/**
 * Soak test (issue 5): runs the built CLI (dist/node/cli.js) on a temp folder and drives mixed
 * load at it for a set time (manifests, HEAD, full blobs checked against their digests, ranges
 * checked byte for byte, tag lists, 404s, downloads aborted half way) while archives are
 * replaced by rename, rewritten in place, added, deleted and broken underneath. Reports requests,
 * errors, the server's open file handles and RSS at start and end, and exits non-zero on any
 * unexpected error or on growth of handles or memory.
 *
 *   node scripts/soak.mjs [--duration 10m] [--concurrency 16] [--report FILE.md] [--keep]
 *
 * Traffic goes only to 127.0.0.1, and the run stops by itself after --duration.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, writeFileSync, createWriteStream } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const { values: args } = parseArgs({
  options: {
    duration: { type: "string", default: "10m" },
    concurrency: { type: "string", default: "16" },
    report: { type: "string" },
    keep: { type: "boolean", default: false },
    "churn-every": { type: "string", default: "250ms" },
  },
});
const ms = (text) => {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text);
  if (!m) throw new Error(`not a duration: ${text}`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? "s"];
};
const DURATION = ms(args.duration);
const CONCURRENCY = Number(args.concurrency);
const CHURN_EVERY = ms(args["churn-every"]);

// ---- archives, built by hand (a tiny OCI layout in a ustar archive) ----

const sha256 = (b) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const enc = new TextEncoder();
let serial = 0;

function tarHeader(name, size) {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100);
  h.write("0000644\0", 100);
  h.write("0000000\0", 108);
  h.write("0000000\0", 116);
  h.write(size.toString(8).padStart(11, "0") + "\0", 124);
  h.write("14536532000\0", 136);
  h.write("0", 156);
  h.write("ustar\u000000", 257);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, "0") + "\0 ", 148);
  return h;
}
function tar(files) {
  const parts = [];
  for (const [name, data] of files) {
    parts.push(tarHeader(name, data.length), Buffer.from(data), Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** An image with one layer of `size` pseudo-random bytes; answers its archive and what to check. */
function makeImage(tag, size) {
  const seed = ++serial;
  const layer = Buffer.alloc(size);
  let x = seed * 2654435761;
  for (let i = 0; i < size; i++) layer[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
  const config = enc.encode(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [sha256(layer)] }, seed }));
  const manifest = enc.encode(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: sha256(config), size: config.length },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: sha256(layer), size: layer.length }],
    }),
  );
  const index = enc.encode(
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", digest: sha256(manifest), size: manifest.length, annotations: { "org.opencontainers.image.ref.name": tag } }],
    }),
  );
  const blob = (b) => [`blobs/${sha256(b).replace(":", "/")}`, b];
  const archive = tar([["oci-layout", enc.encode('{"imageLayoutVersion":"1.0.0"}')], ["index.json", index], blob(manifest), blob(config), blob(layer)]);
  return { archive, tag, manifest: sha256(manifest), layer: { digest: sha256(layer), bytes: layer }, config: sha256(config) };
}

// ---- the folder ----

const work = mkdtempSync(join(tmpdir(), "sor-soak-"));
const dir = join(work, "images");
const cacheDir = join(work, "cache");
mkdirSync(dir, { recursive: true });
const write = (path, bytes) => {
  mkdirSync(dirname(join(dir, path)), { recursive: true });
  writeFileSync(join(dir, path), bytes);
};

/** Names never touched: anything but a right answer from them is an unexpected error. */
const stable = new Map();
for (let i = 0; i < 6; i++) {
  const img = makeImage("v1", [4 << 10, 256 << 10, 1 << 20, 4 << 20, 300, 16 << 20][i]);
  const gz = i % 3 === 2;
  write(`stable/app${i}/v1.oci`, gz ? gzipSync(img.archive) : img.archive);
  stable.set(`stable/app${i}`, img);
}
/** Names whose files change all the time: 200 (old or new bytes, always right), 404, or a broken transfer. */
const churn = new Map();
const CHURN_NAMES = 12;
const churnPath = (i) => `churn/c${i}/latest.oci`;
function putChurn(i, how) {
  const img = makeImage("latest", [2 << 10, 64 << 10, 512 << 10, 2 << 20][i % 4]);
  const bytes = i % 5 === 4 ? gzipSync(img.archive) : img.archive;
  const full = join(dir, churnPath(i));
  mkdirSync(dirname(full), { recursive: true });
  if (how === "rename") {
    writeFileSync(`${dirname(full)}/.latest.oci.tmp`, bytes);
    renameSync(`${dirname(full)}/.latest.oci.tmp`, full);
  } else writeFileSync(full, bytes); // in place (O_TRUNC, then write)
  churn.set(`churn/c${i}`, img);
}
for (let i = 0; i < CHURN_NAMES; i++) putChurn(i, "rename");

const BROKEN = [
  () => Buffer.from("not an archive at all\n".repeat(50)),
  () => makeImage("latest", 1000).archive.subarray(0, 1700),
  () => gzipSync(Buffer.alloc(1 << 20)).subarray(0, 500),
  () => Buffer.alloc(0),
];

// ---- the server ----

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.on("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}
const port = await freePort();
const logFile = join(work, "server.log");
const logStream = createWriteStream(logFile);
const server = spawn(
  process.execPath,
  [join(ROOT, "dist/node/cli.js"), "--dir", dir, "--cache-dir", cacheDir, "--port", String(port), "--host", "127.0.0.1", "--rescan-interval", "30s", "--log-level", "info"],
  { stdio: ["ignore", "ignore", "pipe"] },
);
const serverLog = { error: new Map(), warn: new Map(), lines: 0 };
let logRest = "";
server.stderr.on("data", (d) => {
  logStream.write(d);
  const text = logRest + d.toString();
  const lines = text.split("\n");
  logRest = lines.pop();
  for (const line of lines) {
    serverLog.lines++;
    try {
      const j = JSON.parse(line);
      if (j.level === "error" || j.level === "warn") {
        const key = `${j.msg}${j.problem ? `: ${String(j.problem).replace(/[0-9a-f]{64}/g, "…").slice(0, 100)}` : ""}`;
        serverLog[j.level].set(key, (serverLog[j.level].get(key) ?? 0) + 1);
      }
    } catch {
      serverLog.error.set(`non-JSON: ${line.slice(0, 80)}`, (serverLog.error.get(`non-JSON: ${line.slice(0, 80)}`) ?? 0) + 1);
    }
  }
});
let serverExit;
server.on("exit", (code, signal) => (serverExit = { code, signal }));
const base = `http://127.0.0.1:${port}`;
for (let i = 0; ; i++) {
  try {
    if ((await fetch(`${base}/v2/`)).status === 200) break;
  } catch {}
  if (i > 200) throw new Error("server did not start");
  await new Promise((r) => setTimeout(r, 50));
}

// ---- measurements of the server process ----

function sample() {
  const pid = server.pid;
  let fds = 0;
  let files = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    fds++;
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (target.startsWith(work)) files++;
    } catch {}
  }
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const rss = Number(/VmRSS:\s+(\d+)/.exec(status)[1]) * 1024;
  return { t: Date.now(), fds, files, rss };
}

// ---- load ----

const ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";
const stats = { requests: 0, byKind: {}, statuses: {}, expected: { notFound: 0, aborted: 0, broken: 0 }, unexpected: [], unexpectedCount: 0 };
const unexpected = (what) => {
  stats.unexpectedCount++;
  if (stats.unexpected.length < 20) stats.unexpected.push(`${new Date().toISOString()} ${what}`);
};
const pick = (arr) => arr[Math.floor(Math.random() * arr.length)];

async function readBody(res) {
  const chunks = [];
  const reader = res.body.getReader();
  for (let r = await reader.read(); !r.done; r = await reader.read()) chunks.push(r.value);
  return Buffer.concat(chunks);
}

async function one() {
  const roll = Math.random();
  const isStable = Math.random() < 0.5;
  const [name, img] = pick([...(isStable ? stable : churn).entries()]);
  const tag = img.tag === "v1" ? "v1" : "latest";
  let kind;
  let url;
  let init = {};
  if (roll < 0.25) (kind = "manifest"), (url = `/v2/${name}/manifests/${tag}`), (init = { headers: { Accept: ACCEPT } });
  else if (roll < 0.35) (kind = "head"), (url = `/v2/${name}/manifests/${tag}`), (init = { method: "HEAD", headers: { Accept: ACCEPT } });
  else if (roll < 0.6) (kind = "blob"), (url = `/v2/${name}/blobs/${img.layer.digest}`);
  else if (roll < 0.72) kind = "range";
  else if (roll < 0.78) (kind = "tags"), (url = `/v2/${name}/tags/list`);
  else if (roll < 0.88) (kind = "404"), (url = pick([`/v2/nope${Math.floor(Math.random() * 1000)}/manifests/latest`, `/v2/${name}/blobs/sha256:${"0".repeat(64)}`, `/v2/${name}/manifests/nosuchtag`, "/v2/broken/manifests/latest"]));
  else (kind = "abort"), (url = `/v2/${name}/blobs/${img.layer.digest}`);
  let start = 0;
  let end = 0;
  if (kind === "range") {
    const size = img.layer.bytes.length;
    start = Math.floor(Math.random() * size);
    end = Math.min(size - 1, start + Math.floor(Math.random() * 200_000));
    url = `/v2/${name}/blobs/${img.layer.digest}`;
    init = { headers: { Range: `bytes=${start}-${end}` } };
  }
  stats.requests++;
  stats.byKind[kind] = (stats.byKind[kind] ?? 0) + 1;
  const label = `${kind} ${url}`;
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), 30_000);
  try {
    const res = await fetch(base + url, { ...init, signal: ac.signal });
    stats.statuses[res.status] = (stats.statuses[res.status] ?? 0) + 1;
    if (res.status >= 500) {
      const text = await res.text().catch(() => "");
      // An archive rewritten in place between two reads of the same request can end as 500 (changed while read).
      if (!isStable && /changed while it was being read/.test(text)) return void stats.expected.broken++;
      return unexpected(`${label}: ${res.status} ${text.slice(0, 200)}`);
    }
    if (kind === "abort") {
      const reader = res.body.getReader();
      await reader.read().catch(() => {});
      ac.abort();
      await reader.cancel().catch(() => {});
      stats.expected.aborted++;
      return;
    }
    if (kind === "404") {
      await res.arrayBuffer();
      if (res.status !== 404 && res.status !== 400) unexpected(`${label}: ${res.status}`);
      else stats.expected.notFound++;
      return;
    }
    if (res.status === 404 && !isStable) {
      await res.arrayBuffer();
      stats.expected.notFound++;
      return;
    }
    if (res.status >= 400) return unexpected(`${label}: ${res.status} ${(await res.text()).slice(0, 200)}`);
    if (kind === "head") return;
    let body;
    try {
      body = await readBody(res);
    } catch (e) {
      if (!isStable) return void stats.expected.broken++; // rewritten in place under the download
      return unexpected(`${label}: body failed: ${e.cause?.message ?? e.message}`);
    }
    const length = Number(res.headers.get("content-length"));
    if (body.length !== length) return unexpected(`${label}: ${body.length} bytes, Content-Length ${length}`);
    if (kind === "manifest" && sha256(body) !== res.headers.get("docker-content-digest")) return unexpected(`${label}: manifest bytes do not match Docker-Content-Digest`);
    if (kind === "blob" && sha256(body) !== img.layer.digest) return unexpected(`${label}: blob bytes do not match the digest`);
    if (kind === "range" && isStable && !body.equals(img.layer.bytes.subarray(start, end + 1))) return unexpected(`${label}: range bytes differ`);
    if (kind === "tags" && !JSON.parse(body.toString()).tags.includes(tag) && isStable) return unexpected(`${label}: tag missing`);
  } catch (e) {
    if (kind === "abort") return void stats.expected.aborted++;
    if (!isStable) return void stats.expected.broken++;
    unexpected(`${label}: ${e.cause?.code ?? e.cause?.message ?? e.message}`);
  } finally {
    clearTimeout(timer);
  }
}

// ---- churn ----

const churnStats = { rename: 0, inPlace: 0, delete: 0, add: 0, broken: 0 };
let added = 0;
async function churnLoop(until) {
  while (Date.now() < until) {
    const i = Math.floor(Math.random() * CHURN_NAMES);
    const roll = Math.random();
    try {
      if (roll < 0.4) putChurn(i, "rename"), churnStats.rename++;
      else if (roll < 0.55) putChurn(i, "in-place"), churnStats.inPlace++;
      else if (roll < 0.7) {
        rmSync(join(dir, churnPath(i)), { force: true });
        churnStats.delete++;
        setTimeout(() => putChurn(i, "rename"), 2000); // comes back later
      } else if (roll < 0.85) {
        // New names appear (and old added ones go), so listings and the cache keep changing.
        const n = added++ % 40;
        write(`added/a${n}.oci`, makeImage("latest", 1000 + n).archive);
        if (added > 40) rmSync(join(dir, `added/a${(n + 20) % 40}.oci`), { force: true });
        churnStats.add++;
      } else {
        write(`broken/b${i}.oci`, BROKEN[i % BROKEN.length]());
        churnStats.broken++;
      }
    } catch (e) {
      unexpected(`churn: ${e.message}`);
    }
    await new Promise((r) => setTimeout(r, CHURN_EVERY));
  }
}

// ---- run ----

console.error(`soak: ${args.duration} at concurrency ${CONCURRENCY}, server pid ${server.pid} on ${base}, folder ${work}`);
// Warm up (index everything once), then take the start sample.
for (const [name, img] of [...stable, ...churn]) await fetch(`${base}/v2/${name}/blobs/${img.layer.digest}`).then((r) => r.arrayBuffer()).catch(() => {});
await new Promise((r) => setTimeout(r, 500));
const idleStart = sample();
const samples = [idleStart];
const started = Date.now();
const until = started + DURATION;
// "start" is taken once the load has warmed up (connections open, caches filled): a minute in,
// or a tenth of a short run; "end" just before the load stops; "idle" after it has drained.
const warmAt = started + Math.min(60_000, DURATION / 10);
let first;
let end;
const sampler = setInterval(() => {
  try {
    const s = sample();
    samples.push(s);
    if (!first && s.t >= warmAt) first = s;
    const mins = ((s.t - started) / 60_000).toFixed(1);
    console.error(`soak: ${mins} min, ${stats.requests} requests, ${stats.unexpectedCount} unexpected, fds ${s.fds} (files ${s.files}), rss ${(s.rss / 2 ** 20).toFixed(0)} MiB`);
  } catch {}
}, Math.min(30_000, DURATION / 20));
const workers = Array.from({ length: CONCURRENCY }, async () => {
  while (Date.now() < until && !serverExit) await one();
});
await Promise.all([...workers, churnLoop(until).then(() => (end = sample()))]);
clearInterval(sampler);
first ??= samples[1] ?? idleStart;
// Let in-flight work and the rescan settle, then measure the end state.
await new Promise((r) => setTimeout(r, 3000));
const last = sample();
samples.push(last);
const elapsed = (Date.now() - started) / 1000;
server.kill("SIGTERM");
await new Promise((r) => server.once("exit", r));
logStream.end();

const MiB = (n) => `${(n / 2 ** 20).toFixed(1)} MiB`;
const maxRss = Math.max(...samples.map((s) => s.rss));
const fdGrowth = end.fds - first.fds;
const rssGrowth = end.rss - first.rss;
const exitedEarly = serverExit && serverExit.signal !== "SIGTERM" && serverExit.code !== 0;
// Under load the fd count moves with connections and downloads in flight (about one socket and
// one file per worker); idle afterwards (the clients' keep-alive connections still open), no
// file may be open and there may be no more descriptors than once the load had warmed up.
const ok = stats.unexpectedCount === 0 && last.files === 0 && last.fds <= first.fds + 2 && fdGrowth <= CONCURRENCY && rssGrowth < 64 * 2 ** 20 && !exitedEarly;

const top = (m) => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([k, v]) => `  - ${v} × ${k}`).join("\n") || "  - none";
const report = `### Soak run, ${new Date(started).toISOString().slice(0, 16).replace("T", " ")} UTC

\`node scripts/soak.mjs --duration ${args.duration} --concurrency ${CONCURRENCY}\` (Node ${process.version}, ${os()}), the built CLI on a temp folder, \`--rescan-interval 30s\`.

| | |
| --- | --- |
| duration | ${elapsed.toFixed(0)} s |
| requests | ${stats.requests} (${(stats.requests / elapsed).toFixed(0)}/s): ${Object.entries(stats.byKind).map(([k, v]) => `${k} ${v}`).join(", ")} |
| statuses | ${Object.entries(stats.statuses).map(([k, v]) => `${k}: ${v}`).join(", ")} |
| **unexpected errors** | **${stats.unexpectedCount}** |
| expected outcomes | 404 ${stats.expected.notFound}, downloads aborted by the client ${stats.expected.aborted}, transfers broken by in-place rewrites ${stats.expected.broken} |
| churn underneath | ${churnStats.rename} replaced by rename, ${churnStats.inPlace} rewritten in place, ${churnStats.delete} deleted, ${churnStats.add} added, ${churnStats.broken} broken files written |
| server open fds (all / files under the folders) | before the load ${idleStart.fds} / ${idleStart.files}; under load: start ${first.fds} / ${first.files}, end ${end.fds} / ${end.files}; idle after ${last.fds} / ${last.files} |
| server RSS | before the load ${MiB(idleStart.rss)}; under load: start ${MiB(first.rss)}, end ${MiB(end.rss)}, max ${MiB(maxRss)}; idle after ${MiB(last.rss)} |
| server exit | ${serverExit ? `${serverExit.signal ?? serverExit.code} (after SIGTERM)` : "running"} |
| verdict | ${ok ? "PASS" : "FAIL"} |

Server log, errors by message (expected: the broken files written by the churn):
${top(serverLog.error)}

Server log, warnings by message:
${top(serverLog.warn)}
${stats.unexpected.length ? `\nUnexpected errors (first ${stats.unexpected.length}):\n${stats.unexpected.map((u) => `  - ${u}`).join("\n")}\n` : ""}`;

function os() {
  try {
    return `${readFileSync("/proc/cpuinfo", "utf8").match(/^processor/gm).length} cores`;
  } catch {
    return "?";
  }
}

console.log(report);
if (args.report) writeFileSync(args.report, report);
if (!args.keep) rmSync(work, { recursive: true, force: true });
else console.error(`soak: kept ${work} (server log: ${logFile})`);
process.exit(ok ? 0 : 1);
