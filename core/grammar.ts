/**
 * The distribution-spec grammar for names, tags and digests.
 * https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests
 * Everything a request names is checked here before any disk access.
 */
const NAME_COMPONENT = "[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*";
const NAME = new RegExp(`^${NAME_COMPONENT}(?:/${NAME_COMPONENT})*$`);
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
const DIGEST = /^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/;
const ENCODED_LENGTH: Record<string, number> = { sha256: 64, sha512: 128 };

/** Distribution's limit on repository names. */
export const MAX_NAME_LENGTH = 255;

export function isValidName(name: string): boolean {
  return name.length <= MAX_NAME_LENGTH && NAME.test(name);
}

export function isValidTag(tag: string): boolean {
  return TAG.test(tag);
}

/** A tag, or a digest we can serve: what a manifest reference may be. */
export function isValidReference(ref: string): boolean {
  return looksLikeDigest(ref) ? parseDigest(ref) !== undefined : isValidTag(ref);
}

/** Looks like a digest (`alg:encoded`), whatever the algorithm. */
export function looksLikeDigest(ref: string): boolean {
  return ref.includes(":");
}

export interface ParsedDigest {
  algorithm: string;
  encoded: string;
}

/**
 * A digest we can serve: the grammar, and for the registered algorithms (sha256, sha512) the
 * exact lowercase hex length. `undefined` when invalid.
 */
export function parseDigest(digest: string): ParsedDigest | undefined {
  const m = DIGEST.exec(digest);
  if (!m) return undefined;
  const [, algorithm, encoded] = m;
  const length = ENCODED_LENGTH[algorithm];
  if (length === undefined) return undefined;
  if (encoded.length !== length || !/^[0-9a-f]+$/.test(encoded)) return undefined;
  return { algorithm, encoded };
}
