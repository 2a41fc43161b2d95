/**
 * The CLI as an operator meets it, on every runtime (Node's built CLI, `deno run`): flags,
 * environment, startup errors and exit codes, the listening line, signals and the grace period.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, expect, it } from "vitest";
import { image, layer, layout, packTar } from "../fixtures/oci.ts";
import { describeRuntimes, ensureBuilt, freePort, runtimeCommand } from "../helpers/server.ts";

beforeAll(() => ensureBuilt(), 120_000);

/** Starts the CLI of `runtime` with these flags and environment. */
async function spawnCli(runtime: string, args: string[], env: Record<string, string> = {}) {
  const command = await runtimeCommand(runtime, args);
  return spawn(command.command, command.args, { env: { ...process.env, ...command.env, ...env } });
}

async function archiveDir(size: number) {
  const dir = mkdtempSync(join(tmpdir(), "sor-cli-"));
  const big = image({ layers: [layer({ "b.bin": new Uint8Array(size).fill(7) }, { gzip: false })] });
  mkdirSync(join(dir, "big"));
  writeFileSync(join(dir, "big/latest.oci"), await packTar(layout([{ image: big }])));
  return { dir, digest: big.layers[0].digest, size: big.layers[0].size };
}

describeRuntimes((runtime) => {
  function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 10_000) {
    return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      void spawnCli(runtime, args, env).then((child) => {
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d) => (stdout += d));
        child.stderr.on("data", (d) => (stderr += d));
        const timer = setTimeout(() => (child.kill("SIGKILL"), reject(new Error(`timeout: ${stderr}`))), timeoutMs);
        child.on("exit", (code) => (clearTimeout(timer), resolve({ code, stdout, stderr })));
      }, reject);
    });
  }

  it("--help lists every flag with its environment variable", async () => {
    const { code, stdout } = await runCli(["--help"]);
    expect(code).toBe(0);
    for (const flag of ["--dir", "--port", "--host", "--cache-dir", "--rescan-interval", "--log-level", "--shutdown-grace", "--version"]) expect(stdout).toContain(flag);
    expect(stdout).toContain("SIMPLE_OCI_REGISTRY_DIR");
  });

  it("--version prints the package version", async () => {
    const { code, stdout } = await runCli(["--version"]);
    expect(code).toBe(0);
    const pkg = (await import("../../package.json", { with: { type: "json" } })).default;
    expect(stdout.trim()).toBe(pkg.version);
  });

  it.each([
    [[], 2, /--dir is required/],
    [["--dir", "/nonexistent/folder"], 1, /--dir \/nonexistent\/folder does not exist/],
    [["--dir", "/etc/hostname"], 1, /is not a folder/],
    [["--dir", ".", "--port", "http"], 2, /--port: "http" is not a port number/],
    [["--dir", ".", "--rescan-interval", "soon"], 2, /not a duration/],
    [["--dir", ".", "--log-level", "loud"], 2, /--log-level/],
    [["--dir", ".", "--frobnicate"], 2, /unknown option --frobnicate/],
  ])("%j exits %i with a one-line reason", async (args, status, message) => {
    const { code, stderr } = await runCli(args as string[], { SIMPLE_OCI_REGISTRY_DIR: "" });
    expect(code).toBe(status);
    expect(stderr).toMatch(message as RegExp);
    expect(stderr.trim().split("\n")).toHaveLength(1);
  });

  it("says why it cannot listen: the address is in use", async () => {
    const port = await freePort();
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(port, "127.0.0.1", resolve));
    try {
      const { code, stderr } = await runCli(["--dir", ".", "--host", "127.0.0.1", "--port", String(port)]);
      expect(code).toBe(1);
      expect(stderr.trim()).toBe(`simple-oci-registry: cannot listen on 127.0.0.1:${port}: listen EADDRINUSE: address already in use 127.0.0.1:${port}`);
    } finally {
      blocker.close();
    }
  });

  it("takes flags from the environment and stops cleanly on SIGTERM, letting a download finish", async () => {
    const { dir, digest, size } = await archiveDir(8 << 20);
    const big = { layers: [{ digest, size }] };
    const port = await freePort();
    const child = await spawnCli(runtime, [], {
      SIMPLE_OCI_REGISTRY_DIR: dir,
      SIMPLE_OCI_REGISTRY_PORT: String(port),
      SIMPLE_OCI_REGISTRY_HOST: "127.0.0.1",
      SIMPLE_OCI_REGISTRY_SHUTDOWN_GRACE: "10s",
    });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    for (let i = 0; i < 200 && !stderr.includes('"msg":"listening"'); i++) await new Promise((r) => setTimeout(r, 50));
    const listening = JSON.parse(stderr.split("\n").find((l) => l.includes('"msg":"listening"'))!);
    expect(listening).toEqual({ time: expect.any(String), level: "info", msg: "listening", url: `http://127.0.0.1:${port}`, dir });

    const res = await fetch(`http://127.0.0.1:${port}/v2/big/blobs/${big.layers[0].digest}`);
    const reader = res.body!.getReader();
    const chunks: Uint8Array[] = [(await reader.read()).value!];
    child.kill("SIGTERM");
    for (let r = await reader.read(); !r.done; r = await reader.read()) chunks.push(r.value);
    expect(Buffer.concat(chunks).length).toBe(big.layers[0].size);
    expect(await exited).toBe(0);
    expect(stderr).toContain('"msg":"shutting down"');
    // No new connections after the signal.
    await expect(fetch(`http://127.0.0.1:${port}/v2/`)).rejects.toThrow();
    rmSync(dir, { recursive: true, force: true });
  });

  it("cuts a download still running when the grace period is over, then exits 0", async () => {
    // More than loopback socket buffers take ahead of a client that stops reading.
    const { dir, digest } = await archiveDir(64 << 20);
    const port = await freePort();
    const child = await spawnCli(runtime, ["--dir", dir, "--host", "127.0.0.1", "--port", String(port), "--shutdown-grace", "1s"]);
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    for (let i = 0; i < 200 && !stderr.includes('"msg":"listening"'); i++) await new Promise((r) => setTimeout(r, 50));
    const res = await fetch(`http://127.0.0.1:${port}/v2/big/blobs/${digest}`);
    const reader = res.body!.getReader();
    await reader.read(); // then stop reading
    const signalled = Date.now();
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(Date.now() - signalled).toBeGreaterThanOrEqual(900);
    expect(Date.now() - signalled).toBeLessThan(8000);
    expect(stderr).toContain('"msg":"shutdown grace period over, closing connections"');
    await reader.cancel().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });
});
