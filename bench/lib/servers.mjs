// Starts and stops the servers under test, each on its own loopback port with its own files:
// nginx (static files), CNCF distribution (`docker-registry`), and this registry (Node, Deno).
// Every process started here is recorded and killed by its PID when the bench exits.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { accessSync, closeSync, constants, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { delimiter, join } from "node:path";
import { ACCEPT_MANIFESTS, waitFor } from "./http.mjs";
import { processTree } from "./proc.mjs";

/** Program -> the Debian package that provides it. */
export const PACKAGES = {
  nginx: "nginx",
  wrk: "wrk",
  "docker-registry": "docker-registry",
  skopeo: "skopeo",
  curl: "curl",
};

/** Full path of a program on PATH (or in /usr/sbin, /sbin, where nginx lives), or undefined. */
export function which(name) {
  const dirs = (process.env.PATH ?? "").split(delimiter).concat(["/usr/sbin", "/sbin", "/usr/local/sbin"]);
  for (const dir of dirs) {
    if (!dir) continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {}
  }
  return undefined;
}

/** Programs the bench needs that are missing, and the apt-get line that installs them. */
export function missingPrograms() {
  const missing = Object.keys(PACKAGES).filter((p) => !which(p));
  const packages = [...new Set(missing.map((p) => PACKAGES[p]))];
  return { missing, install: packages.length ? `apt-get install -y --no-install-recommends ${packages.join(" ")}` : "" };
}

export function versionOf(cmd, args) {
  // nginx -v prints to stderr, wrk -v to stdout and exits 1: take the first line of either.
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 10_000 });
  return `${r.stdout ?? ""}\n${r.stderr ?? ""}`.split("\n").map((l) => l.trim()).find(Boolean) ?? "unknown";
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const started = new Set();
// Interrupted: exit normally so that the handler below kills what was started.
for (const signal of ["SIGINT", "SIGTERM"]) process.once(signal, () => process.exit(130));
process.on("exit", () => {
  // Descendants too: nginx's workers outlive a killed master.
  const pids = [...started].flatMap((child) => processTree(child.pid));
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
});

/** A running server: its base URL, its process, and a way to stop it. */
export class Server {
  constructor({ name, child, url, logFile }) {
    this.name = name;
    this.child = child;
    this.pid = child.pid;
    this.url = url;
    this.logFile = logFile;
    this.exited = false;
    this.exitPromise = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    this.exitPromise.then(() => {
      this.exited = true;
      started.delete(child);
    });
    started.add(child);
  }

  /** The server's process and its descendants (nginx's workers). */
  pids() {
    return processTree(this.pid);
  }

  logTail(lines = 20) {
    try {
      return readFileSync(this.logFile, "utf8").trim().split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  }

  async ready(path, headers = {}, timeoutMs = 60_000) {
    try {
      return await waitFor(`${this.url}${path}`, { headers, timeoutMs, alive: () => !this.exited });
    } catch (e) {
      await this.stop();
      throw new Error(`${this.name}: ${e.message}\n${this.logTail()}`);
    }
  }

  /** SIGTERM to this PID, SIGKILL after `graceMs`. */
  async stop(graceMs = 5000) {
    if (this.exited) return;
    try {
      process.kill(this.pid, "SIGTERM");
    } catch {}
    const tree = this.pids();
    const timer = setTimeout(() => {
      for (const pid of tree) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {}
      }
    }, graceMs);
    await this.exitPromise;
    clearTimeout(timer);
  }
}

function launch(cmd, args, { logFile, cwd, env }) {
  const fd = openSync(logFile, "a");
  try {
    const child = spawn(cmd, args, { cwd, env: env ?? process.env, stdio: ["ignore", fd, fd] });
    return child;
  } finally {
    closeSync(fd);
  }
}

/** nginx serving `root` as static files: sendfile on, access log off, its own prefix. */
export async function startNginx({ prefix, root, port, manifestDigests, wait = true }) {
  mkdirSync(join(prefix, "logs"), { recursive: true });
  const conf = join(prefix, "nginx.conf");
  const user = process.getuid?.() === 0 ? "user root root;\n" : "";
  writeFileSync(
    conf,
    `${user}worker_processes auto;
daemon off;
pid ${prefix}/nginx.pid;
error_log ${prefix}/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  client_body_temp_path ${prefix}/client_body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  map $uri $manifest_digest {
${Object.entries(manifestDigests).map(([uri, digest]) => `    ${uri} ${digest};`).join("\n")}
  }
  server {
    listen 127.0.0.1:${port};
    root ${root};
    location / {
      types { }
      default_type application/octet-stream;
    }
    location ~ /manifests/ {
      types { }
      default_type application/vnd.oci.image.manifest.v1+json;
      add_header Docker-Content-Digest $manifest_digest;
    }
  }
}
`,
  );
  const logFile = join(prefix, "logs", "stderr.log");
  const child = launch(which("nginx"), ["-p", `${prefix}/`, "-c", conf, "-e", `${prefix}/logs/error.log`], { logFile });
  const server = new Server({ name: "nginx", child, url: `http://127.0.0.1:${port}`, logFile });
  if (wait) await server.ready(Object.keys(manifestDigests)[0]);
  return server;
}

function distributionConfig(storage, port) {
  return `version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${storage}
  cache:
    blobdescriptor: inmemory
  delete:
    enabled: false
http:
  addr: 127.0.0.1:${port}
`;
}

/** CNCF distribution with filesystem storage in `storage` and its own config.yml in `home`. */
export async function startDistribution({ home, storage, port, wait = true }) {
  mkdirSync(home, { recursive: true });
  mkdirSync(storage, { recursive: true });
  const config = join(home, "config.yml");
  writeFileSync(config, distributionConfig(storage, port));
  const logFile = join(home, "stderr.log");
  const child = launch(which("docker-registry"), ["serve", config], { logFile, cwd: home });
  const server = new Server({ name: "distribution", child, url: `http://127.0.0.1:${port}`, logFile });
  if (wait) await server.ready("/v2/");
  return server;
}

/** Pushes an OCI layout to distribution with skopeo, keeping its digests. */
export function skopeoPush(layoutDir, tag, target) {
  execFileSync(
    which("skopeo"),
    ["--insecure-policy", "copy", "--quiet", "--all", "--preserve-digests", "--dest-tls-verify=false", `oci:${layoutDir}:${tag}`, target],
    { stdio: ["ignore", "ignore", "pipe"], timeout: 600_000 },
  );
}

/** The command that runs this registry on a runtime, or undefined when that runtime is not there. */
export function registryCommand(runtime, { repoRoot, nodeCli, nodeFlags = [] }) {
  if (runtime === "node") return { cmd: process.execPath, args: [...nodeFlags, nodeCli] };
  if (runtime === "deno") {
    const main = join(repoRoot, "adapters", "deno", "main.ts");
    if (!existsSync(main)) return undefined;
    const local = join(repoRoot, "node_modules", ".bin", "deno");
    const deno = existsSync(local) ? local : which("deno");
    if (!deno) return undefined;
    return { cmd: deno, args: ["run", "--allow-read", "--allow-write", "--allow-net", "--allow-env", "--allow-sys", main] };
  }
  throw new Error(`unknown runtime ${runtime}`);
}

/** This registry on `runtime`, serving `dir`. `wait` false: return as soon as it is spawned. */
export async function startRegistry({ runtime, command, dir, cacheDir, port, logDir, repoRoot, wait = true }) {
  mkdirSync(logDir, { recursive: true });
  mkdirSync(cacheDir, { recursive: true });
  const logFile = join(logDir, `${runtime}-${port}.log`);
  const args = [...command.args, "--dir", dir, "--port", String(port), "--host", "127.0.0.1", "--cache-dir", cacheDir, "--log-level", "warn"];
  const child = launch(command.cmd, args, { logFile, cwd: repoRoot });
  const server = new Server({ name: runtime, child, url: `http://127.0.0.1:${port}`, logFile });
  if (wait) await server.ready("/v2/");
  return server;
}

export { ACCEPT_MANIFESTS };
