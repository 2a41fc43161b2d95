/**
 * `simple-oci-registry check --dir DIR [--json]`: what the registry would serve from a folder,
 * and what is wrong with it, before it reaches the nodes. Runtime-free: it runs core's own
 * archive store and lookup over the adapter's FileSystem, so it sees exactly what the server
 * sees, and then reads every served blob once to check it against its digest (the server
 * streams plain-tar layers without hashing them).
 *
 * Errors (exit status 1): unreadable or broken archives, images left unservable (a manifest or
 * blob whose bytes do not match its digest, a missing blob), the same name:tag in several
 * files with different digests (which one is served depends on lookup order and mtimes).
 * Warnings: a tag shadowed by an earlier candidate with the same digest, images no tag serves,
 * folders that could not be scanned, archives no valid repository name reaches.
 */
import { ArchiveStore, isBroken, type Archive } from "../../core/archives.ts";
import type { FileSystem, WritableFileSystem } from "../../core/fs.ts";
import { parseDigest } from "../../core/grammar.ts";
import type { HasherFactory } from "../../core/hash.ts";
import { readBlobBytes, type BlobLocation, type ManifestRecord } from "../../core/layout.ts";
import { type Logger, silentLogger } from "../../core/log.ts";
import { Lookup } from "../../core/lookup.ts";
import { isIndexMediaType } from "../../core/media.ts";
import { namespaceFolder } from "../../core/namespace.ts";
import { listArchives, namesServedBy } from "../../core/scan.ts";

export interface CheckedArchive {
  file: string;
  format?: string;
  manifests?: number;
  blobs?: number;
  error?: string;
}

export interface ServedImage {
  /**
   * Served only to requests with containerd's `?ns=<ns>` (`--ns-dirs`): the file is under a
   * `<host>:<port>/` folder, which no repository name can start with.
   */
  ns?: string;
  name: string;
  tag: string;
  digest: string;
  mediaType: string;
  /** `os/architecture[/variant]` of the image, or of each child of an index. */
  platforms: string[];
  /** The file the registry serves this tag from. */
  file: string;
}

export interface Problem {
  severity: "error" | "warning";
  code: "unreadable" | "broken-archive" | "image-unservable" | "digest-mismatch" | "tag-conflict" | "shadowed-tag" | "untagged" | "unreachable" | "scan";
  message: string;
  file?: string;
  name?: string;
  tag?: string;
  digest?: string;
}

export interface CheckReport {
  archives: CheckedArchive[];
  images: ServedImage[];
  problems: Problem[];
  errors: number;
  warnings: number;
}

export interface CheckOptions {
  images: FileSystem;
  /** Where gzipped archives are unpacked while checking (the caller cleans it up). */
  cache: WritableFileSystem;
  createHasher: HasherFactory;
  /** Hash every served blob (default true). */
  verifyBlobs?: boolean;
}

/**
 * The names a file may serve: by the lookup rules, or, under a `<host>:<port>/` folder (not a
 * valid name component), the names under it for `?ns=<host>:<port>` requests.
 */
function namesOfFile(file: string): Array<{ ns: string; name: string }> {
  const slash = file.indexOf("/");
  const first = slash < 0 ? "" : file.slice(0, slash);
  if (first.includes(":") && namespaceFolder(first) === first) return namesServedBy(file.slice(slash + 1)).map((name) => ({ ns: first, name }));
  return namesServedBy(file).map((name) => ({ ns: "", name }));
}

/** `os/arch[/variant]`. */
const platformText = (p: { os?: string; architecture?: string; variant?: string } | undefined) =>
  p && p.os && p.architecture ? [p.os, p.architecture, p.variant].filter(Boolean).join("/") : "";

async function platformsOf(archive: Archive, record: ManifestRecord): Promise<string[]> {
  if (isIndexMediaType(record.mediaType) || Array.isArray(record.json.manifests)) {
    return (record.json.manifests ?? []).map((d) => platformText(d.platform) || "unknown");
  }
  const config = record.json.config;
  const location = config && archive.blobs.get(config.digest);
  if (!location || location.size > 1 << 20) return [];
  try {
    const json = JSON.parse(new TextDecoder().decode(await readBlobBytes(location))) as { os?: string; architecture?: string; variant?: string };
    const text = platformText(json);
    return text ? [text] : [];
  } catch {
    return [];
  }
}

/** Streams a blob through the hasher; `undefined` when it matches, else what is wrong. */
async function verifyBlob(digest: string, location: BlobLocation, createHasher: HasherFactory): Promise<string | undefined> {
  const parsed = parseDigest(digest);
  const hasher = parsed && createHasher(parsed.algorithm);
  if (!parsed || !hasher) return undefined;
  const stream = await location.fs.stream(location.path, location.offset, location.offset + location.size, { expect: location.expect });
  if (!stream) return "the file changed while it was being checked";
  let size = 0;
  for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) {
    hasher.update(chunk);
    size += chunk.byteLength;
  }
  if (size !== location.size) return `${size} bytes, expected ${location.size}`;
  return hasher.digest() === parsed.encoded ? undefined : "its bytes do not match its digest";
}

export async function checkFolder(options: CheckOptions, logger: Logger = silentLogger): Promise<CheckReport> {
  const problems: Problem[] = [];
  const store = new ArchiveStore({ fs: options.images, cache: options.cache, createHasher: options.createHasher, logger });
  const lookup = new Lookup(options.images, store);
  const listing = await listArchives(options.images);
  for (const message of listing.problems) problems.push({ severity: "warning", code: "scan", message });

  const archives: CheckedArchive[] = [];
  const opened = new Map<string, Archive>();
  for (const file of listing.archives) {
    const archive = await store.open(file).catch((e: Error) => ({ error: `cannot read: ${e.message}` }));
    if (!archive) continue;
    if ("error" in archive || isBroken(archive as Archive)) {
      const error = (archive as { error: string }).error;
      archives.push({ file, error });
      const unreadable = error.startsWith("cannot read");
      problems.push({ severity: "error", code: unreadable ? "unreadable" : "broken-archive", file, message: `${file}: ${error}` });
      continue;
    }
    const a = archive as Archive;
    opened.set(file, a);
    archives.push({ file, format: a.format, manifests: a.manifests.size, blobs: a.blobs.size });
    for (const problem of a.problems) {
      const [digest] = problem.split(": ", 1);
      const mismatch = /do not match their digest|does not match/.test(problem);
      problems.push({ severity: "error", code: mismatch ? "digest-mismatch" : "image-unservable", file, digest: digest.includes(":") ? digest : undefined, message: `${file}: ${problem}` });
    }
    if (options.verifyBlobs ?? true) {
      for (const [digest, location] of a.blobs) {
        if (a.manifests.has(digest)) continue; // manifests were checked when the archive was indexed
        const wrong = await verifyBlob(digest, location, options.createHasher).catch((e: Error) => `cannot read: ${e.message}`);
        if (wrong) problems.push({ severity: "error", code: "digest-mismatch", file, digest, message: `${file}: blob ${digest}: ${wrong}` });
      }
    }
  }

  // Every name some file may serve, then what the lookup really answers for each of its tags.
  const byName = new Map<string, { ns: string; name: string; files: string[] }>();
  for (const file of listing.archives) {
    const names = namesOfFile(file);
    if (names.length === 0) problems.push({ severity: "warning", code: "unreachable", file, message: `${file}: no valid repository name leads to this file (names are lowercase: a-z, 0-9, . _ - and /)` });
    for (const { ns, name } of names) {
      const key = `${ns}\0${name}`;
      if (!byName.has(key)) byName.set(key, { ns, name, files: [] });
      byName.get(key)!.files.push(file);
    }
  }
  const images: ServedImage[] = [];
  const servedDigests = new Map<string, Set<string>>(); // file -> digests served by tag from it
  for (const key of [...byName.keys()].sort()) {
    const { ns, name: repository, files } = byName.get(key)!;
    const view = ns ? lookup.within(ns) : lookup;
    const name = ns ? `${ns}/${repository}` : repository; // as messages show it
    const holders = new Map<string, Array<{ file: string; digest: string }>>();
    for (const file of files) {
      const archive = opened.get(file);
      if (!archive) continue;
      for (const [tag, digest] of Lookup.tagsIn(archive, repository, ns)) holders.set(tag, [...(holders.get(tag) ?? []), { file, digest }]);
    }
    for (const tag of (await view.tags(repository)) ?? []) if (!holders.has(tag)) holders.set(tag, []);
    for (const tag of [...holders.keys()].sort()) {
      const hit = await view.manifest(repository, tag);
      if (!("record" in hit)) continue;
      const { archive, record } = hit;
      // A `?ns=` request falls back to the usual candidates: those are listed under their own name.
      if (ns && !archive.path.startsWith(`${ns}/`)) continue;
      images.push({ ...(ns && { ns }), name: repository, tag, digest: record.digest, mediaType: record.mediaType, platforms: await platformsOf(archive, record), file: archive.path });
      if (!servedDigests.has(archive.path)) servedDigests.set(archive.path, new Set());
      servedDigests.get(archive.path)!.add(record.digest);
      const others = holders.get(tag)!.filter((h) => h.file !== archive.path);
      if (others.length === 0) continue;
      const differ = others.filter((h) => h.digest !== record.digest);
      if (differ.length > 0) {
        problems.push({
          severity: "error",
          code: "tag-conflict",
          name,
          tag,
          file: archive.path,
          message: `${name}:${tag} is in ${[archive.path, ...others.map((h) => h.file)].join(", ")} with different digests (${archive.path} serves ${record.digest} now; a newer file may take over)`,
        });
      }
      for (const h of others.filter((o) => o.digest === record.digest)) {
        problems.push({ severity: "warning", code: "shadowed-tag", name, tag, file: h.file, message: `${name}:${tag} in ${h.file} is shadowed by the same image in ${archive.path}` });
      }
    }
  }
  for (const [file, archive] of opened) {
    const served = servedDigests.get(file) ?? new Set();
    for (const entry of archive.entries) {
      if (served.has(entry.digest)) continue;
      const names = namesOfFile(file).map(({ ns, name }) => (ns ? `${ns}/${name}` : name));
      problems.push({
        severity: "warning",
        code: "untagged",
        file,
        digest: entry.digest,
        message: `${file}: ${entry.digest} is served by no tag${names.length ? ` (pull it as ${names[0]}@${entry.digest})` : ""}`,
      });
    }
  }
  const errors = problems.filter((p) => p.severity === "error").length;
  return { archives, images, problems, errors, warnings: problems.length - errors };
}

const short = (digest: string) => digest.replace(/^(sha256|sha512):([0-9a-f]{12})[0-9a-f]+$/, "$1:$2");

/** The report as a table for people: what is served, then the problems, then a summary. */
export function formatReport(report: CheckReport): string {
  const rows = report.images.map((i) => [i.ns ? `${i.ns}/${i.name}` : i.name, i.tag, short(i.digest), i.platforms.join(",") || "-", i.file]);
  const header = ["NAME", "TAG", "DIGEST", "PLATFORMS", "FILE"];
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (cells: string[]) => cells.map((cell, c) => (c === cells.length - 1 ? cell : cell.padEnd(widths[c]))).join("  ");
  const out: string[] = [];
  if (rows.length) out.push(line(header), ...rows.map(line));
  else out.push("Nothing would be served.");
  if (report.problems.length) {
    out.push("", "PROBLEMS");
    for (const p of report.problems) out.push(`${p.severity === "error" ? "error  " : "warning"}  ${p.code.padEnd(16)}  ${p.message}`);
  }
  out.push(
    "",
    `${report.archives.length} archive${report.archives.length === 1 ? "" : "s"}, ${report.images.length} tag${report.images.length === 1 ? "" : "s"} served, ${report.errors} error${report.errors === 1 ? "" : "s"}, ${report.warnings} warning${report.warnings === 1 ? "" : "s"}`,
  );
  return `${out.join("\n")}\n`;
}

export interface CheckArgs {
  dir: string;
  json: boolean;
  cacheDir?: string;
}

export const CHECK_HELP = `Usage: simple-oci-registry check --dir DIR [--json] [--cache-dir DIR]

Lists every name, tag, digest, platform and file the registry would serve from DIR, checks
every archive and blob against its digest, and reports problems. Exits 1 when there are errors,
0 otherwise (warnings included), 2 on a usage error.

Options:
  --dir DIR         folder of .oci archives (env SIMPLE_OCI_REGISTRY_DIR)
  --json            print the report as JSON
  --cache-dir DIR   where gzipped archives are unpacked while checking (default: a temporary folder, removed afterwards)
  --help            show this help`;

/** `check`'s own flags; `undefined` for --help. Throws a message for a usage error. */
export function parseCheckArgs(argv: string[], env: Record<string, string | undefined>): CheckArgs | undefined {
  let dir: string | undefined;
  let cacheDir: string | undefined;
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.indexOf("=");
    const name = eq < 0 ? arg : arg.slice(0, eq);
    const value = () => {
      const v = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
      if (v === undefined) throw new Error(`${name} needs a value`);
      return v;
    };
    if (name === "--help") return undefined;
    else if (name === "--json") json = true;
    else if (name === "--dir") dir = value();
    else if (name === "--cache-dir") cacheDir = value();
    else throw new Error(`check: unknown option ${arg} (see check --help)`);
  }
  dir ??= env.SIMPLE_OCI_REGISTRY_DIR || undefined;
  if (!dir) throw new Error("check: --dir is required: the folder of .oci archives to check");
  return { dir, json, cacheDir };
}
