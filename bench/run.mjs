#!/usr/bin/env node
// The benchmark of issue 4: this registry (Node, and Deno when adapters/deno/main.ts exists)
// against nginx serving the same bytes as static files and CNCF distribution holding the same
// images, on loopback, trials alternating between servers. Prints medians and ratios, writes
// JSON to bench/results/. See BENCHMARKS.md for the latest results and `--help` for options.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { availableParallelism, cpus, loadavg, release, tmpdir, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { appName, LOOKUP_TAGS, prepareData } from "./lib/data.mjs";
import { ACCEPT_MANIFESTS, fetchUrl } from "./lib/http.mjs";
import { throughput, wrk } from "./lib/load.mjs";
import { peakRss, readBytes, resetPeakRss } from "./lib/proc.mjs";
import { aggregate, evaluateTargets, METRICS, MIB, renderReport } from "./lib/report.mjs";
import {
  freePort,
  missingPrograms,
  registryCommand,
  skopeoPush,
  startDistribution,
  startNginx,
  startRegistry,
  versionOf,
  which,
} from "./lib/servers.mjs";

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const GIB = 2 ** 30;
const SECTIONS = ["blob", "requests", "cold", "lookup", "pull"];

const HELP = `Usage: npm run bench -- [options]

  --quick             small sizes and short runs (seconds; what CI runs)
  --only LIST         comma-separated sections: ${SECTIONS.join(",")} (default: all)
  --runtimes LIST     registry runtimes to run: node,deno (default: both; deno only when
                      adapters/deno/main.ts exists)
  --trials N          trials per server and measurement (default 5, quick 1)
  --duration S        seconds per wrk run (default 5, quick 1)
  --work DIR          keep generated data and distribution's storage in DIR and reuse them
                      on the next run with the same sizes (default: a temp folder, removed)
  --out FILE          write the JSON here (default bench/results/bench-<date>.json)
  --cli FILE          run this built Node CLI instead of building the sources
  --node-flags FLAGS  extra flags for the Node registry in the throughput and request runs
                      (for example "--cpu-prof --cpu-prof-dir=/tmp/prof")
  --also NAME=CLI     one more Node registry column, running another build of the CLI (an
                      A/B comparison in the same run, trials alternating); repeatable
  --help              this text

Needs nginx, wrk, docker-registry (CNCF distribution), skopeo and curl; installs nothing.`;

function parseOptions(argv) {
  const o = { quick: false, only: SECTIONS, runtimes: ["node", "deno"], nodeFlags: [], also: [] };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "--quick": o.quick = true; break;
      case "--only": o.only = value().split(",").filter(Boolean); break;
      case "--runtimes": o.runtimes = value().split(",").filter(Boolean); break;
      case "--trials": o.trials = Number(value()); break;
      case "--duration": o.duration = Number(value()); break;
      case "--work": o.work = resolve(value()); break;
      case "--out": o.out = resolve(value()); break;
      case "--cli": o.cli = resolve(value()); break;
      case "--node-flags": o.nodeFlags = value().split(" ").filter(Boolean); break;
      case "--also": {
        const [name, cli] = value().split(/=(.*)/s, 2);
        if (!/^[a-z][a-z0-9-]*$/.test(name) || !cli || ["nginx", "distribution", "node", "deno"].includes(name)) throw new Error("--also takes NAME=CLI with a new lower-case name");
        o.also.push({ name, cli: resolve(cli) });
        break;
      }
      case "--help": case "-h": o.help = true; break;
      default: throw new Error(`unknown option ${argv[i]} (see --help)`);
    }
  }
  for (const s of o.only) if (!SECTIONS.includes(s)) throw new Error(`--only: unknown section ${s}`);
  for (const r of o.runtimes) if (r !== "node" && r !== "deno") throw new Error(`--runtimes: unknown runtime ${r}`);
  if (o.trials !== undefined && !(Number.isInteger(o.trials) && o.trials > 0 && o.trials <= 100)) throw new Error("--trials must be 1-100");
  if (o.duration !== undefined && !(o.duration > 0 && o.duration <= 600)) throw new Error("--duration must be 1-600 seconds");
  return o;
}

const log = (msg) => process.stderr.write(`[bench] ${msg}\n`);
/** `list` rotated by `n`, so no server always goes first. */
const rotate = (list, n) => list.map((_, i) => list[(i + n) % list.length]);

async function buildCli(outDir) {
  log("building the Node CLI from the sources (tsup)");
  const { build } = await import("tsup");
  await build({
    entry: { cli: "adapters/node/cli.ts" },
    outDir,
    format: ["esm"],
    target: "node20",
    platform: "node",
    sourcemap: true,
    splitting: false,
    clean: true,
    dts: false,
    silent: true,
    config: false,
  });
  return join(outDir, "cli.js");
}

function machineInfo() {
  const mem = readFileSync("/proc/meminfo", "utf8").match(/^MemTotal:\s+(\d+) kB/m);
  return {
    nproc: availableParallelism(),
    cpu: cpus()[0]?.model ?? "unknown",
    memoryMiB: mem ? Math.round(Number(mem[1]) / 1024) : Math.round(totalmem() / MIB),
    kernel: release(),
    node: process.version,
    nginx: versionOf(which("nginx"), ["-v"]),
    distribution: versionOf(which("docker-registry"), ["--version"]),
    wrk: versionOf(which("wrk"), ["-v"]),
    curl: versionOf(which("curl"), ["--version"]),
    skopeo: versionOf(which("skopeo"), ["--version"]),
    deno: existsSync(join(REPO_ROOT, "node_modules", ".bin", "deno")) ? versionOf(join(REPO_ROOT, "node_modules", ".bin", "deno"), ["--version"]) : "not installed",
  };
}

async function main() {
  const opts = parseOptions(process.argv.slice(2));
  if (opts.help) {
    console.log(HELP);
    return 0;
  }
  process.chdir(REPO_ROOT);
  const { missing, install } = missingPrograms();
  if (missing.length) {
    console.error(`bench: missing ${missing.join(", ")}; install with: ${install}`);
    return 2;
  }

  const p = opts.quick
    ? { seed: "1", bigBytes: 16 * MIB, smallBytes: 4096, midBytes: 2 * MIB, manyArchives: 300, fewArchives: 10 }
    : { seed: "1", bigBytes: GIB, smallBytes: 4096, midBytes: 256 * MIB, manyArchives: 10_000, fewArchives: 10 };
  const trials = opts.trials ?? (opts.quick ? 1 : 5);
  const duration = opts.duration ?? (opts.quick ? 1 : 5);
  const latencyDuration = opts.duration ?? (opts.quick ? 1 : 3);

  const work = opts.work ?? mkdtempSync(join(tmpdir(), "simple-oci-registry-bench-"));
  mkdirSync(work, { recursive: true });
  chmodSync(work, 0o755);
  const running = new Set();
  const stopAll = () => Promise.all([...running].map((s) => s.stop()));
  const track = (server) => (running.add(server), server);
  const stop = async (server) => {
    running.delete(server);
    await server.stop();
  };

  const results = {
    date: new Date().toISOString(),
    quick: opts.quick,
    machine: machineInfo(),
    loadAverageAtStart: loadavg(),
    params: { ...p, trials, wrkSeconds: duration, latencySeconds: latencyDuration, wrkConnections: 32 },
    servers: [],
    /** The columns that are this registry (node, deno, and --also builds). */
    registries: [],
    skipped: {},
    metrics: Object.fromEntries(METRICS.map((m) => [m.key, { label: m.label, better: m.better, trials: {}, median: {} }])),
    targets: [],
  };
  const record = (key, server, value) => ((results.metrics[key].trials[server] ??= []).push(value));
  // Warm-up runs before the timed ones (JIT, page cache); skipped in quick mode.
  const warm = !opts.quick;
  let buildDir;

  try {
    // Built per run (parallel runs do not share a folder) under node_modules/, so that the
    // bundle's package imports resolve as dist/'s do.
    buildDir = join(REPO_ROOT, "node_modules", ".cache", "simple-oci-registry-bench", `build-${process.pid}`);
    const cli = opts.cli ?? (await buildCli(buildDir));
    const runtimes = [];
    for (const runtime of opts.runtimes) {
      const command = registryCommand(runtime, { repoRoot: REPO_ROOT, nodeCli: cli });
      if (!command) {
        results.skipped[runtime] = runtime === "deno" ? "adapters/deno/main.ts does not exist yet" : "not available";
        continue;
      }
      // A runtime whose server does not start is reported, not fatal (the Deno adapter may be mid-way).
      try {
        const probe = await startRegistry({ runtime, command, dir: work, cacheDir: join(work, "cache", "probe"), port: await freePort(), logDir: join(work, "logs"), repoRoot: REPO_ROOT });
        await probe.stop();
        runtimes.push({ name: runtime, command });
      } catch (e) {
        if (runtime === "node") throw e;
        results.skipped[runtime] = `its server did not start: ${String(e.message).split("\n")[0]}`;
        log(`${runtime}: skipped (${results.skipped[runtime]})`);
      }
    }
    for (const extra of opts.also) runtimes.push({ name: extra.name, command: registryCommand("node", { repoRoot: REPO_ROOT, nodeCli: extra.cli }) });
    results.servers = ["nginx", "distribution", ...runtimes.map((r) => r.name)];
    results.registries = runtimes.map((r) => r.name);

    const data = join(work, "data");
    const images = await prepareData(data, p, log);
    const serve = (name) => join(data, "serve", name);
    const manifestDigests = { "/v2/small/manifests/latest": images.small.manifestDigest, "/v2/big/manifests/latest": images.big.manifestDigest };
    const blobPath = `/v2/big/blobs/${images.big.layerDigest}`;
    const manifestPath = "/v2/small/manifests/latest";
    const smallBlobPath = `/v2/small/blobs/${images.small.layerDigest}`;
    const accept = { Accept: ACCEPT_MANIFESTS };

    // Distribution's storage, filled by skopeo once per data set.
    const storage = join(work, "distribution-storage");
    const pushedMarker = join(work, "distribution-pushed.json");
    const pushedFor = JSON.stringify({ p, big: images.big.manifestDigest, small: images.small.manifestDigest });
    const startDist = async (home, wait = true) => track(await startDistribution({ home: join(work, home), storage, port: await freePort(), wait }));
    if (!existsSync(pushedMarker) || readFileSync(pushedMarker, "utf8") !== pushedFor) {
      rmSync(storage, { recursive: true, force: true });
      const dist = await startDist("distribution-push");
      for (const name of ["big", "small"]) {
        log(`pushing ${name} to distribution with skopeo`);
        skopeoPush(join(data, "layouts", name), "latest", `docker://${dist.url.slice("http://".length)}/${name}:latest`);
      }
      await stop(dist);
      writeFileSync(pushedMarker, pushedFor);
    }

    const startNg = async (prefix, wait = true) =>
      track(await startNginx({ prefix: join(work, prefix), root: join(data, "static"), port: await freePort(), manifestDigests, wait }));
    const startReg = async (runtime, dir, cacheName, { wait = true, extraFlags = [] } = {}) => {
      const command = runtime.command.cmd === process.execPath && extraFlags.length ? { ...runtime.command, args: [...extraFlags, ...runtime.command.args] } : runtime.command;
      return track(
        await startRegistry({ runtime: runtime.name, command, dir, cacheDir: join(work, "cache", cacheName), port: await freePort(), logDir: join(work, "logs"), repoRoot: REPO_ROOT, wait }),
      );
    };

    // ---------------------------------------------------------------------------------------
    // 1-3, 5: throughput, request rates, CPU, peak RSS. All servers up; one load at a time.
    if (opts.only.includes("blob") || opts.only.includes("requests")) {
      log("starting nginx, distribution and the registry");
      const servers = [await startNg("nginx"), await startDist("distribution")];
      for (const runtime of runtimes) servers.push(await startReg(runtime, serve("images"), `main-${runtime.name}`, { extraFlags: opts.nodeFlags }));

      // Same answers everywhere before anything is timed.
      for (const s of servers) {
        const m = await fetchUrl(`${s.url}${manifestPath}`, { headers: accept, keep: true });
        if (m.status !== 200 || m.body.toString("utf8") !== images.small.manifest) throw new Error(`${s.name}: manifest GET answered ${m.status} with other bytes`);
        const b = await fetchUrl(`${s.url}${smallBlobPath}`);
        if (b.status !== 200 || b.bytes !== p.smallBytes) throw new Error(`${s.name}: small blob GET answered ${b.status}, ${b.bytes} bytes`);
        const h = await fetchUrl(`${s.url}${manifestPath}`, { method: "HEAD", headers: accept });
        if (h.status !== 200) throw new Error(`${s.name}: manifest HEAD answered ${h.status}`);
      }

      if (opts.only.includes("blob")) {
        log(`blob throughput: ${trials} trials × ${servers.length} servers, 1 and 8 clients`);
        if (warm) for (const s of servers) await throughput(s, `${s.url}${blobPath}`, { clients: 1, expectBytes: p.bigBytes });
        const perGib = (r) => r.cpuSeconds / (r.bytes / GIB);
        for (let round = 0; round < trials; round++) {
          for (const s of rotate(servers, round)) {
            const r = await throughput(s, `${s.url}${blobPath}`, { clients: 1, expectBytes: p.bigBytes });
            record("blob_1_client_mbps", s.name, r.mbps);
            record("cpu_s_per_gib", s.name, perGib(r));
          }
        }
        for (let round = 0; round < trials; round++) {
          for (const s of rotate(servers, round)) {
            const pids = s.pids();
            const reset = resetPeakRss(pids);
            const r = await throughput(s, `${s.url}${blobPath}`, { clients: 8, expectBytes: p.bigBytes });
            record("blob_8_clients_mbps", s.name, r.mbps);
            record("cpu_s_per_gib", s.name, perGib(r));
            record("peak_rss_mib", s.name, peakRss(pids) / MIB);
            if (!reset) results.skipped[`${s.name} peak RSS reset`] = "clear_refs refused: peak RSS is since process start";
          }
        }
      }

      if (opts.only.includes("requests")) {
        log(`request rates: ${trials} trials × ${servers.length} servers × 3 loads, ${duration} s each, 32 connections`);
        const workFile = join(work, "wrk-paths.txt");
        if (warm) for (const s of servers) await wrk(s, `${s.url}${manifestPath}`, { connections: 32, durationSec: 1, accept: ACCEPT_MANIFESTS, workFile });
        const loads = [
          { prefix: "manifest_get", path: manifestPath, method: "GET", accept: ACCEPT_MANIFESTS },
          { prefix: "manifest_head", path: manifestPath, method: "HEAD", accept: ACCEPT_MANIFESTS },
          { prefix: "small_blob", path: smallBlobPath, method: "GET" },
        ];
        for (let round = 0; round < trials; round++) {
          for (const load of loads) {
            for (const s of rotate(servers, round)) {
              const r = await wrk(s, `${s.url}${load.path}`, { connections: 32, durationSec: duration, method: load.method, accept: load.accept, workFile });
              record(`${load.prefix}_rps`, s.name, r.rps);
              record(`${load.prefix}_p50_ms`, s.name, r.p50Ms);
              record(`${load.prefix}_p99_ms`, s.name, r.p99Ms);
              if (load.prefix === "manifest_get") record("cpu_us_per_manifest", s.name, (r.cpuSeconds / r.requests) * 1e6);
            }
          }
        }
      }
      await Promise.all(servers.map(stop));
    }

    // ---------------------------------------------------------------------------------------
    // 4: cold start. A fresh process per trial; time from spawn to the first 200.
    if (opts.only.includes("cold")) {
      log(`cold start: ${trials} trials`);
      const bigManifest = "/v2/big/manifests/latest";
      const coldRuns = [
        {
          name: "nginx",
          run: async () => {
            const t0 = performance.now();
            const s = await startNg("nginx-cold", false);
            await s.ready(bigManifest, accept);
            record("cold_start_manifest_ms", "nginx", performance.now() - t0);
            await stop(s);
          },
        },
        {
          name: "distribution",
          run: async () => {
            const t0 = performance.now();
            const s = await startDist("distribution-cold", false);
            await s.ready(bigManifest, accept);
            record("cold_start_manifest_ms", "distribution", performance.now() - t0);
            await stop(s);
          },
        },
        ...runtimes.map((runtime) => ({
          name: runtime.name,
          run: async () => {
            // Bytes read: everything the process read (rchar) by its first manifest, less what the
            // same runtime read by its first /v2/ on an empty folder (code, modules, config), so
            // that an index built at start-up counts as well as one built on the request.
            rmSync(join(work, "cache", "cold"), { recursive: true, force: true });
            let t0 = performance.now();
            let s = await startReg(runtime, serve("cold"), "cold", { wait: false });
            await s.ready("/v2/");
            const res = await fetchUrl(`${s.url}${bigManifest}`, { headers: accept });
            const elapsed = performance.now() - t0;
            const readCold = readBytes(s.pids());
            if (res.status !== 200) throw new Error(`${runtime.name}: cold manifest GET answered ${res.status}`);
            record("cold_start_manifest_ms", runtime.name, elapsed);
            await stop(s);
            rmSync(join(work, "cache", "cold"), { recursive: true, force: true });
            t0 = performance.now();
            s = await startReg(runtime, serve("empty"), "cold", { wait: false });
            await s.ready("/v2/");
            record("cold_start_empty_ms", runtime.name, performance.now() - t0);
            record("cold_start_read_bytes", runtime.name, Math.max(0, readCold - readBytes(s.pids())));
            await stop(s);
          },
        })),
      ];
      if (warm) {
        // Binaries, modules and archive headers into the page cache; these runs are not kept.
        for (const r of coldRuns) await r.run();
        for (const key of ["cold_start_manifest_ms", "cold_start_read_bytes", "cold_start_empty_ms"]) results.metrics[key].trials = {};
      }
      for (let round = 0; round < trials; round++) for (const r of rotate(coldRuns, round)) await r.run();
    }

    // ---------------------------------------------------------------------------------------
    // 6: lookup latency in a folder of 10 archives and one of 10,000; 404s. One connection.
    if (opts.only.includes("lookup") && runtimes.length) {
      log(`lookup latency: ${trials} trials, ${latencyDuration} s each, 1 connection`);
      const spread = (k) => Math.floor((k * p.manyArchives) / 100);
      const lists = {
        few: Array.from({ length: p.fewArchives * LOOKUP_TAGS }, (_, k) => `/v2/${appName(Math.floor(k / LOOKUP_TAGS))}/manifests/v${k % LOOKUP_TAGS}`),
        many: Array.from({ length: 100 }, (_, k) => `/v2/${appName(spread(k))}/manifests/v${k % LOOKUP_TAGS}`),
        tag404: Array.from({ length: 100 }, (_, k) => `/v2/${appName(spread(k))}/manifests/missing${k}`),
        name404: Array.from({ length: 100 }, (_, k) => `/v2/nobody-${k}/manifests/v${k % LOOKUP_TAGS}`),
      };
      const runs = [];
      for (const runtime of runtimes) {
        const few = await startReg(runtime, serve("few"), `few-${runtime.name}`);
        const many = await startReg(runtime, serve("many"), `many-${runtime.name}`);
        runs.push(
          { runtime, server: few, paths: lists.few, key: "lookup_few_p50_us", expect404: false },
          { runtime, server: many, paths: lists.many, key: "lookup_many_p50_us", expect404: false },
          { runtime, server: many, paths: lists.tag404, key: "notfound_tag_p50_us", expect404: true },
          { runtime, server: many, paths: lists.name404, key: "notfound_name_p50_us", expect404: true },
        );
      }
      const workFile = join(work, "wrk-lookup-paths.txt");
      for (const r of runs) {
        // First requests index the archives; then a short warm-up run.
        for (const path of r.paths) {
          const res = await fetchUrl(`${r.server.url}${path}`, { headers: accept });
          if (res.status !== (r.expect404 ? 404 : 200)) throw new Error(`${r.runtime.name}: GET ${path} answered ${res.status}`);
        }
        if (warm) await wrk(r.server, r.server.url, { connections: 1, threads: 1, durationSec: 1, accept: ACCEPT_MANIFESTS, paths: r.paths, expect404: r.expect404, workFile });
      }
      for (let round = 0; round < trials; round++) {
        for (const r of rotate(runs, round)) {
          const res = await wrk(r.server, r.server.url, { connections: 1, threads: 1, durationSec: latencyDuration, accept: ACCEPT_MANIFESTS, paths: r.paths, expect404: r.expect404, workFile });
          record(r.key, r.runtime.name, res.p50Ms * 1000);
        }
      }
      await stopAll();
    }

    // ---------------------------------------------------------------------------------------
    // 7: first pull (manifest, config, layer) from a fresh server: gzip archive vs plain.
    if (opts.only.includes("pull") && runtimes.length) {
      log(`first pull, gzip vs plain: ${trials} trials`);
      const pull = async (s) => {
        const m = await fetchUrl(`${s.url}/v2/mid/manifests/latest`, { headers: accept, keep: true });
        if (m.status !== 200) throw new Error(`${s.name}: first pull manifest answered ${m.status}`);
        const manifest = JSON.parse(m.body.toString("utf8"));
        for (const d of [manifest.config, ...manifest.layers]) {
          const b = await fetchUrl(`${s.url}/v2/mid/blobs/${d.digest}`);
          if (b.status !== 200 || b.bytes !== d.size) throw new Error(`${s.name}: blob ${d.digest} answered ${b.status} with ${b.bytes} bytes`);
        }
      };
      const runs = runtimes.flatMap((runtime) =>
        ["plain", "gzip"].map((kind) => async () => {
          const cacheName = `pull-${runtime.name}`;
          rmSync(join(work, "cache", cacheName), { recursive: true, force: true });
          const s = await startReg(runtime, serve(kind), cacheName);
          const t0 = performance.now();
          await pull(s);
          record(`first_pull_${kind}_ms`, runtime.name, performance.now() - t0);
          await stop(s);
        }),
      );
      for (let round = 0; round < trials; round++) for (const run of rotate(runs, round)) await run();
    }
  } finally {
    await stopAll();
    if (!opts.work) rmSync(work, { recursive: true, force: true });
    if (buildDir) rmSync(buildDir, { recursive: true, force: true });
  }

  results.loadAverageAtEnd = loadavg();
  for (const m of METRICS) {
    const entry = results.metrics[m.key];
    for (const [server, values] of Object.entries(entry.trials)) entry.median[server] = aggregate(m, values);
  }
  const medians = Object.fromEntries(Object.entries(results.metrics).map(([k, v]) => [k, v.median]));
  for (const runtime of results.registries ?? []) results.targets.push(...evaluateTargets(medians, runtime));

  const out = opts.out ?? join(REPO_ROOT, "bench", "results", `bench-${results.date.replace(/[:.]/g, "-")}${opts.quick ? "-quick" : ""}.json`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
  console.log(renderReport(results));
  console.log(`\nJSON: ${out}`);
  return 0;
}

let exitCode = 1;
try {
  exitCode = await main();
} catch (e) {
  console.error(`bench: ${e?.stack ?? e}`);
}
process.exit(exitCode);
