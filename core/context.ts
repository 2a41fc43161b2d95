import type { ArchiveStore } from "./archives.ts";
import type { Catalog } from "./catalog.ts";
import { OciError } from "./errors.ts";
import { isValidName, isValidTag, looksLikeDigest, parseDigest } from "./grammar.ts";
import type { HasherFactory } from "./hash.ts";
import type { StreamGate } from "./limits.ts";
import type { Logger } from "./log.ts";
import type { Lookup, Miss } from "./lookup.ts";
import type { BlobVerifier } from "./verify.ts";

/** What every route handler is given. */
export interface Context {
  lookup: Lookup;
  store: ArchiveStore;
  catalog: Catalog;
  logger: Logger;
  createHasher: HasherFactory;
  /** Caps blob streams open at once (`--max-open-blobs`). */
  gate?: StreamGate;
  /** Hashes each blob the first time it is streamed in full; remembers bad ones. */
  verifier?: BlobVerifier;
}

/** Request params as itty-router matched them (not decoded: `%2f` stays and fails the grammar). */
export interface RouteRequest extends Request {
  params: Record<string, string>;
  query: Record<string, string | string[] | undefined>;
}

export function requireName(name: string | undefined): string {
  if (name === undefined || !isValidName(name)) throw new OciError("NAME_INVALID", { name });
  return name;
}

export function requireDigest(digest: string | undefined): string {
  if (digest === undefined || !parseDigest(digest)) throw new OciError("DIGEST_INVALID", { digest });
  return digest;
}

/** A tag or digest. A tag outside the grammar is simply not found (as the conformance suite expects). */
export function requireReference(reference: string | undefined): string {
  if (reference === undefined) throw new OciError("MANIFEST_UNKNOWN");
  if (looksLikeDigest(reference)) return requireDigest(reference);
  if (!isValidTag(reference)) throw new OciError("MANIFEST_UNKNOWN", { tag: reference });
  return reference;
}

export function isMiss<T extends object>(x: T | Miss): x is Miss {
  return "problems" in x;
}

/** The error for a miss: an unknown name, or the given code with what broken files said. */
export async function missError(ctx: Context, name: string, code: "MANIFEST_UNKNOWN" | "BLOB_UNKNOWN", miss: Miss, detail: Record<string, unknown>): Promise<OciError> {
  return missErrorOf(miss.nameExists ?? (await ctx.lookup.exists(name)), name, code, miss, detail);
}

/** `missError` once it is known whether the name has candidate files. */
export function missErrorOf(nameExists: boolean, name: string, code: "MANIFEST_UNKNOWN" | "BLOB_UNKNOWN", miss: Miss, detail: Record<string, unknown>): OciError {
  if (!nameExists) return new OciError("NAME_UNKNOWN", { name });
  return new OciError(code, miss.problems.length ? { ...detail, problems: miss.problems } : detail);
}
