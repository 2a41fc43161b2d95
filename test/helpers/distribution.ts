// CNCF distribution (Debian's `docker-registry`) on a free loopback port with its storage in a
// temp folder: the reference the registry's answers are compared with.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, sleep } from "./server.ts";

export interface Distribution {
  url: string;
  port: number;
  host: string;
  dir: string;
  logs(): string;
  stop(): Promise<void>;
}

export async function startDistribution(): Promise<Distribution> {
  const dir = mkdtempSync(join(tmpdir(), "distribution-"));
  const port = await freePort();
  const config = join(dir, "config.yml");
  writeFileSync(
    config,
    [
      "version: 0.1",
      "log:",
      "  level: warn",
      "  accesslog:",
      "    disabled: true",
      "storage:",
      "  filesystem:",
      `    rootdirectory: ${join(dir, "data")}`,
      "  delete:",
      "    enabled: false",
      "http:",
      `  addr: 127.0.0.1:${port}`,
      "",
    ].join("\n"),
  );
  const child = spawn("docker-registry", ["serve", config], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout!.setEncoding("utf8").on("data", (c: string) => (log += c));
  child.stderr!.setEncoding("utf8").on("data", (c: string) => (log += c));
  let exited = false;
  const exit = new Promise<void>((resolveExit) => {
    child.once("exit", () => ((exited = true), resolveExit()));
    child.once("error", (e) => ((exited = true), (log += `\nspawn error: ${e.message}`), resolveExit()));
  });
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  const stop = async () => {
    process.removeListener("exit", killOnExit);
    if (!exited) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exit;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (exited) {
      await stop();
      throw new Error(`docker-registry exited early:\n${log}`);
    }
    try {
      const response = await fetch(`${url}/v2/`);
      await response.arrayBuffer();
      if (response.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`docker-registry not ready on ${url}:\n${log}`);
    }
    await sleep(50);
  }
  return { url, port, host: `127.0.0.1:${port}`, dir, logs: () => log, stop };
}
