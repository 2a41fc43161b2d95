import { createHash } from "node:crypto";
import type { HasherFactory } from "../../core/hash.ts";

/** Native sha256 / sha512 from node:crypto (OpenSSL), several times faster than the pure-JS default. */
export const nodeHasher: HasherFactory = (algorithm) => {
  if (algorithm !== "sha256" && algorithm !== "sha512") return undefined;
  const h = createHash(algorithm);
  return {
    update: (data) => void h.update(data),
    digest: () => h.digest("hex"),
  };
};
