/** The built CLI as an operator meets it: flags, environment, startup errors, signals. */
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { image, layer, layout, packTar } from "../fixtures/oci.ts";
import { ensureBuilt, freePort, REPO_ROOT } from "../helpers/server.ts";

const CLI = join(REPO_ROOT, "dist/node/cli.js");

function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 10_000) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => (child.kill("SIGKILL"), reject(new Error(`timeout: ${stderr}`))), timeoutMs);
    child.on("exit", (code) => (clearTimeout(timer), resolve({ code, stdout, stderr })));
  });
}

beforeAll(() => ensureBuilt(), 120_000);

describe("CLI", () => {
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

  it("takes flags from the environment and stops cleanly on SIGTERM, letting a download finish", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sor-cli-"));
    const big = image({ layers: [layer({ "b.bin": new Uint8Array(8 << 20).fill(7) }, { gzip: false })] });
    mkdirSync(join(dir, "big"));
    writeFileSync(join(dir, "big/latest.oci"), await packTar(layout([{ image: big }])));
    const port = await freePort();
    const child = spawn(process.execPath, [CLI], {
      env: { ...process.env, SIMPLE_OCI_REGISTRY_DIR: dir, SIMPLE_OCI_REGISTRY_PORT: String(port), SIMPLE_OCI_REGISTRY_HOST: "127.0.0.1", SIMPLE_OCI_REGISTRY_SHUTDOWN_GRACE: "10s" },
    });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    for (let i = 0; i < 100 && !stderr.includes('"msg":"listening"'); i++) await new Promise((r) => setTimeout(r, 50));
    expect(stderr).toContain(`http://127.0.0.1:${port}`);

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
});
