/** `simple-oci-registry check`: the shared folder checker on Node's file system. */
import { mkdtempSync, rmSync } from "node:fs";
import { stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CHECK_HELP, checkFolder, formatReport, parseCheckArgs } from "../shared/check.ts";
import { nodeFileSystem } from "./fs.ts";
import { nodeHasher } from "./hash.ts";

/** Runs the checker; answers the exit status (0 clean or warnings only, 1 errors, 2 usage). */
export async function runCheck(argv: string[], env: Record<string, string | undefined>, out: (text: string) => void, err: (text: string) => void): Promise<number> {
  let args;
  try {
    args = parseCheckArgs(argv, env);
  } catch (e) {
    err(`simple-oci-registry: ${(e as Error).message}\n`);
    return 2;
  }
  if (!args) {
    out(`${CHECK_HELP}\n`);
    return 0;
  }
  const info = await stat(args.dir).catch((e: NodeJS.ErrnoException) => e);
  if (info instanceof Error || !info.isDirectory()) {
    err(`simple-oci-registry: --dir ${args.dir} ${info instanceof Error ? (info.code === "ENOENT" ? "does not exist" : info.message) : "is not a folder"}\n`);
    return 1;
  }
  const cacheDir = args.cacheDir ?? mkdtempSync(join(tmpdir(), "simple-oci-registry-check-"));
  try {
    const report = await checkFolder({ images: nodeFileSystem(args.dir), cache: nodeFileSystem(cacheDir, { writable: true }), createHasher: nodeHasher });
    out(args.json ? `${JSON.stringify({ dir: args.dir, ...report }, null, 2)}\n` : formatReport(report));
    return report.errors > 0 ? 1 : 0;
  } finally {
    if (args.cacheDir === undefined) rmSync(cacheDir, { recursive: true, force: true });
  }
}
