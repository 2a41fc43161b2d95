// Runs `npm run bench -- --quick` (issue 4) so that the benchmark cannot rot: it must finish and
// write its JSON with every measurement for nginx, distribution and the Node registry (and for
// Deno when its adapter ran). The numbers themselves are not judged here: CI machines are noisy.
// In CI (CI=true) a missing nginx, wrk, docker-registry, skopeo or curl fails this file; elsewhere
// it is skipped with the reason.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, expect, test } from "vitest";
import { describeWithTools } from "../helpers/tools.ts";

const REPO_ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));

/** The seven measurements of issue 4, as the JSON names them, and who must have each. */
const MEASUREMENTS: Record<string, "all" | "registry"> = {
  // 1. blob throughput
  blob_1_client_mbps: "all",
  blob_8_clients_mbps: "all",
  // 2. manifest GET/HEAD and small blob GET with 32 connections
  manifest_get_rps: "all",
  manifest_get_p50_ms: "all",
  manifest_get_p99_ms: "all",
  manifest_head_rps: "all",
  manifest_head_p50_ms: "all",
  manifest_head_p99_ms: "all",
  small_blob_rps: "all",
  small_blob_p50_ms: "all",
  small_blob_p99_ms: "all",
  // 3. server CPU
  cpu_us_per_manifest: "all",
  cpu_s_per_gib: "all",
  // 4. cold start
  cold_start_manifest_ms: "all",
  cold_start_empty_ms: "registry",
  cold_start_read_bytes: "registry",
  // 5. peak RSS
  peak_rss_mib: "all",
  // 6. lookup latency, 404s
  lookup_few_p50_us: "registry",
  lookup_many_p50_us: "registry",
  notfound_tag_p50_us: "registry",
  notfound_name_p50_us: "registry",
  // 7. gzip vs plain first pull
  first_pull_plain_ms: "registry",
  first_pull_gzip_ms: "registry",
};

interface BenchResults {
  quick: boolean;
  servers: string[];
  registries: string[];
  metrics: Record<string, { median: Record<string, number | null> }>;
  targets: Array<{ runtime: string; id: string; value: number | null }>;
}

const work = mkdtempSync(join(tmpdir(), "bench-quick-test-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function runQuickBench(out: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = execFile(
      process.execPath,
      ["bench/run.mjs", "--quick", "--out", out],
      { cwd: REPO_ROOT, timeout: 170_000, maxBuffer: 16 << 20, env: { ...process.env, TMPDIR: work } },
      (error, stdout, stderr) => done({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    child.stdin?.end();
  });
}

describeWithTools(["nginx", "wrk", "docker-registry", "skopeo", "curl"], "npm run bench -- --quick", () => {
  test("completes and writes every measurement to its JSON", { timeout: 180_000 }, async () => {
    const out = join(work, "quick.json");
    const run = await runQuickBench(out);
    expect(run.code, `bench failed:\n${run.stderr}\n${run.stdout}`).toBe(0);
    expect(run.stdout).toContain("Targets (issue 4):");

    const results = JSON.parse(readFileSync(out, "utf8")) as BenchResults;
    expect(results.quick).toBe(true);
    expect(results.servers).toEqual(expect.arrayContaining(["nginx", "distribution", "node"]));
    const registries = results.registries;
    for (const [key, who] of Object.entries(MEASUREMENTS)) {
      const servers = who === "all" ? results.servers : registries;
      for (const server of servers) {
        const value = results.metrics[key]?.median?.[server];
        expect(typeof value === "number" && Number.isFinite(value) && value >= 0, `${key} for ${server}: ${value}`).toBe(true);
      }
    }
    // Every target of issue 4 was evaluated for every registry runtime.
    for (const runtime of registries) {
      const targets = results.targets.filter((t) => t.runtime === runtime);
      expect(targets.length).toBeGreaterThanOrEqual(12);
      for (const t of targets) expect(t.value, `${runtime} ${t.id}`).not.toBeNull();
    }
  });
});
