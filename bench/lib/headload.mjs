// HEAD load generator. wrk cannot send HEAD (wg/wrk#198: its parser then waits for a body
// that never comes), so HEAD runs use this: keep-alive connections on raw sockets, one request
// in flight per connection, the request bytes built once, answers parsed only as far as the
// end of their headers. Latencies go into a 1 µs histogram.
//
// As a module: `headLoad(url, { connections, durationSec, headers, procs })` runs `procs`
// child processes (one per core, as wrk runs threads) and merges their results.
// As a program: `node headload.mjs URL CONNECTIONS SECONDS HEADERS_JSON` prints one JSON line.
import { spawn } from "node:child_process";
import { connect } from "node:net";
import { fileURLToPath } from "node:url";

const HIST_US = 2_000_000;

async function runHere(url, connections, durationSec, headers) {
  const u = new URL(url);
  const lines = [`HEAD ${u.pathname}${u.search} HTTP/1.1`, `Host: ${u.host}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), "", ""];
  const request = Buffer.from(lines.join("\r\n"));
  const hist = new Uint32Array(HIST_US + 1);
  let requests = 0;
  let statusErrors = 0;
  let socketErrors = 0;
  let running = true;
  const started = performance.now();
  const deadline = started + durationSec * 1000;

  const one = () =>
    new Promise((resolve) => {
      const socket = connect({ host: u.hostname, port: Number(u.port), noDelay: true });
      let pending = "";
      let sentAt = 0;
      const send = () => {
        if (!running || performance.now() >= deadline) {
          running = false;
          socket.end();
          return;
        }
        sentAt = performance.now();
        socket.write(request);
      };
      socket.setEncoding("latin1");
      socket.on("connect", send);
      socket.on("data", (chunk) => {
        pending = pending === "" ? chunk : pending + chunk;
        const end = pending.indexOf("\r\n\r\n");
        if (end < 0) return;
        const us = Math.min(HIST_US, Math.round((performance.now() - sentAt) * 1000));
        hist[us]++;
        requests++;
        // "HTTP/1.1 200 ..."
        if (pending.charCodeAt(9) !== 50) statusErrors++;
        if (end + 4 !== pending.length) socketErrors++; // a body or a second answer: not a HEAD answer
        pending = "";
        send();
      });
      socket.on("error", () => {
        socketErrors++;
        resolve();
      });
      socket.on("close", () => {
        if (running && performance.now() < deadline) socketErrors++; // the server hung up early
        resolve();
      });
    });
  await Promise.all(Array.from({ length: connections }, one));
  const durationUs = (performance.now() - started) * 1000;
  const buckets = [];
  for (let i = 0; i <= HIST_US; i++) if (hist[i]) buckets.push([i, hist[i]]);
  return { requests, durationUs, statusErrors, socketErrors, buckets };
}

function percentile(buckets, total, q) {
  const target = Math.ceil((q / 100) * total);
  let seen = 0;
  for (const [us, n] of buckets) {
    seen += n;
    if (seen >= target) return us;
  }
  return buckets.length ? buckets[buckets.length - 1][0] : 0;
}

/** HEAD load from `procs` processes sharing `connections`; wrk-like summary. */
export async function headLoad(url, { connections, durationSec, headers = {}, procs = 2 }) {
  const self = fileURLToPath(import.meta.url);
  const shares = Array.from({ length: procs }, (_, i) => Math.floor(connections / procs) + (i < connections % procs ? 1 : 0)).filter((n) => n > 0);
  const parts = await Promise.all(
    shares.map(
      (n) =>
        new Promise((resolve, reject) => {
          const child = spawn(process.execPath, [self, url, String(n), String(durationSec), JSON.stringify(headers)], { stdio: ["ignore", "pipe", "pipe"] });
          let out = "";
          let err = "";
          child.stdout.on("data", (d) => (out += d));
          child.stderr.on("data", (d) => (err += d));
          const timer = setTimeout(() => child.kill("SIGKILL"), (durationSec + 30) * 1000);
          child.on("exit", (code) => {
            clearTimeout(timer);
            if (code === 0) resolve(JSON.parse(out));
            else reject(new Error(`HEAD load generator exited ${code}: ${err}`));
          });
        }),
    ),
  );
  const merged = new Map();
  let requests = 0;
  let statusErrors = 0;
  let socketErrors = 0;
  let durationUs = 0;
  for (const p of parts) {
    requests += p.requests;
    statusErrors += p.statusErrors;
    socketErrors += p.socketErrors;
    durationUs = Math.max(durationUs, p.durationUs);
    for (const [us, n] of p.buckets) merged.set(us, (merged.get(us) ?? 0) + n);
  }
  const buckets = [...merged].sort((a, b) => a[0] - b[0]);
  return {
    requests,
    duration_us: durationUs,
    status_errors: statusErrors,
    socket_errors: socketErrors,
    p50_us: percentile(buckets, requests, 50),
    p99_us: percentile(buckets, requests, 99),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [url, connections, seconds, headers] = process.argv.slice(2);
  const result = await runHere(url, Number(connections), Number(seconds), JSON.parse(headers ?? "{}"));
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
