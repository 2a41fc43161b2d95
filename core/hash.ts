import { sha256, sha512 } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";

/** An incremental hash. Adapters may pass a native one (node:crypto) for speed. */
export interface Hasher {
  update(data: Uint8Array): void;
  /** Lowercase hex. */
  digest(): string;
}

/** Creates a hasher for a digest algorithm (`sha256`, `sha512`), or `undefined` if unsupported. */
export type HasherFactory = (algorithm: string) => Hasher | undefined;

/** Pure-JS default, so the core runs anywhere. */
export const defaultHasher: HasherFactory = (algorithm) => {
  const fn = algorithm === "sha256" ? sha256 : algorithm === "sha512" ? sha512 : undefined;
  if (!fn) return undefined;
  const h = fn.create();
  return {
    update: (data) => void h.update(data),
    digest: () => bytesToHex(h.digest()),
  };
};

/** `algorithm:hex` of whole bytes, or `undefined` for an unsupported algorithm. */
export function digestOf(createHasher: HasherFactory, algorithm: string, data: Uint8Array): string | undefined {
  const h = createHasher(algorithm);
  if (!h) return undefined;
  h.update(data);
  return `${algorithm}:${h.digest()}`;
}
