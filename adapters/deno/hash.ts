/**
 * sha256 / sha512 through Deno's built-in `node:crypto` (native code, no npm package, no
 * permission), several times faster than the core's pure-JS default, which stays the fallback.
 */
import { createHash } from "node:crypto";
import { defaultHasher, type HasherFactory } from "../../core/hash.ts";

export const denoHasher: HasherFactory = (algorithm) => {
  if (algorithm !== "sha256" && algorithm !== "sha512") return defaultHasher(algorithm);
  const h = createHash(algorithm);
  return {
    update: (data) => void h.update(data),
    digest: () => h.digest("hex"),
  };
};
