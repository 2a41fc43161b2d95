// Load generators: curl for blob throughput (C, writes to /dev/null, one process per client)
// and wrk for request rates and latency. Server CPU is sampled around every run.
import { execFile, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { headLoad } from "./headload.mjs";
import { cpuSeconds } from "./proc.mjs";
import { which } from "./servers.mjs";

const WRK_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), "wrk.lua");

function runCurl(url, headers, timeoutSec) {
  return new Promise((resolve, reject) => {
    const args = ["-s", "-o", "/dev/null", "--max-time", String(timeoutSec), "-w", "%{http_code} %{size_download}"];
    for (const [k, v] of Object.entries(headers)) args.push("-H", `${k}: ${v}`);
    args.push(url);
    execFile(which("curl"), args, { timeout: (timeoutSec + 10) * 1000 }, (error, stdout, stderr) => {
      if (error) return reject(new Error(`curl ${url}: ${stderr || error.message}`));
      const [code, size] = stdout.trim().split(" ").map(Number);
      resolve({ code, size });
    });
  });
}

/**
 * `clients` concurrent downloads of `url`, each by its own curl process. Aggregate MB/s
 * (10^6 bytes) over the wall time from the first spawn to the last exit; server CPU seconds.
 */
export async function throughput(server, url, { clients, expectBytes, timeoutSec = 600 }) {
  const pids = server.pids();
  const cpu0 = cpuSeconds(pids);
  const t0 = performance.now();
  const results = await Promise.all(Array.from({ length: clients }, () => runCurl(url, {}, timeoutSec)));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(pids) - cpu0;
  for (const r of results) {
    if (r.code !== 200 || r.size !== expectBytes) throw new Error(`${server.name}: GET ${url} gave ${r.code} with ${r.size} bytes, expected 200 with ${expectBytes}`);
  }
  const bytes = expectBytes * clients;
  return { mbps: bytes / 1e6 / seconds, seconds, bytes, cpuSeconds: cpu };
}

/**
 * wrk against `url` (HEAD: the raw-socket generator of headload.mjs, as wrk cannot send HEAD). `paths`: cycle through these paths instead of the URL's own. `expect404`:
 * every answer must be a 4xx (wrk counts them as status errors); otherwise none may be.
 */
export async function wrk(server, url, { connections, threads = 2, durationSec, method = "GET", accept, paths, expect404 = false, workFile }) {
  const env = { ...process.env, BENCH_METHOD: method, BENCH_ACCEPT: accept ?? "", BENCH_PATHS: "" };
  if (paths) {
    writeFileSync(workFile, `${paths.join("\n")}\n`);
    env.BENCH_PATHS = workFile;
  }
  const args = ["-t", String(Math.min(threads, connections)), "-c", String(connections), "-d", `${durationSec}s`, "--timeout", "10s", "-s", WRK_SCRIPT, url];
  const pids = server.pids();
  const cpu0 = cpuSeconds(pids);
  if (method === "HEAD") {
    if (paths || expect404) throw new Error("HEAD loads take one URL answered 200");
    const r = await headLoad(url, { connections, durationSec, headers: accept ? { Accept: accept } : {}, procs: threads });
    const cpu = cpuSeconds(pids) - cpu0;
    if (r.requests === 0 || r.socket_errors > 0 || r.status_errors > 0) throw new Error(`${server.name}: HEAD ${url}: ${JSON.stringify(r)}`);
    return { rps: r.requests / (r.duration_us / 1e6), requests: r.requests, p50Ms: r.p50_us / 1000, p99Ms: r.p99_us / 1000, cpuSeconds: cpu };
  }
  const stdout = await new Promise((resolve, reject) => {
    const child = spawn(which("wrk"), args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), (durationSec + 30) * 1000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`wrk ${args.join(" ")} exited ${code}: ${err || out}`));
    });
  });
  const cpu = cpuSeconds(pids) - cpu0;
  const line = stdout.split("\n").find((l) => l.startsWith("WRKJSON "));
  if (!line) throw new Error(`wrk printed no result:\n${stdout}`);
  const r = JSON.parse(line.slice("WRKJSON ".length));
  const socketErrors = r.connect_errors + r.read_errors + r.write_errors + r.timeouts;
  if (r.requests === 0) throw new Error(`${server.name}: wrk ${method} ${url} completed no request`);
  if (socketErrors > 0) throw new Error(`${server.name}: wrk ${method} ${url}: socket errors ${JSON.stringify(r)}`);
  const wrongStatus = expect404 ? r.requests - r.status_errors : r.status_errors;
  if (wrongStatus > 0) throw new Error(`${server.name}: wrk ${method} ${url}: ${wrongStatus} of ${r.requests} answers had an unexpected status`);
  return {
    rps: r.requests / (r.duration_us / 1e6),
    requests: r.requests,
    p50Ms: r.p50_us / 1000,
    p99Ms: r.p99_us / 1000,
    cpuSeconds: cpu,
  };
}
