/** `simple-oci-registry check` on Deno: the shared folder checker on the Deno file system. */
import { CHECK_HELP, checkFolder, formatReport, parseCheckArgs } from "../shared/check.ts";
import { denoFileSystem } from "./fs.ts";
import { denoHasher } from "./hash.ts";

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
  let reason: string | undefined;
  try {
    if (!(await Deno.stat(args.dir)).isDirectory) reason = "is not a folder";
  } catch (e) {
    reason = e instanceof Deno.errors.NotFound ? "does not exist" : (e as Error).message;
  }
  if (reason) {
    err(`simple-oci-registry: --dir ${args.dir} ${reason}\n`);
    return 1;
  }
  const cacheDir = args.cacheDir ?? (await Deno.makeTempDir({ prefix: "simple-oci-registry-check-" }));
  try {
    const report = await checkFolder({ images: denoFileSystem(args.dir), cache: denoFileSystem(cacheDir, { writable: true }), createHasher: denoHasher });
    out(args.json ? `${JSON.stringify({ dir: args.dir, ...report }, null, 2)}\n` : formatReport(report));
    return report.errors > 0 ? 1 : 0;
  } finally {
    if (args.cacheDir === undefined) await Deno.remove(cacheDir, { recursive: true }).catch(() => {});
  }
}
