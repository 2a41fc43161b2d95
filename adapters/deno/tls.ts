/**
 * HTTPS for the Deno adapter: `--tls-cert` and `--tls-key` (PEM) handed to `Deno.serve`, and
 * the files the operator names (`--htpasswd` too) read through `configFileSystem`. Deno.serve
 * cannot swap a certificate in place, so server.ts reloads a changed pair by opening a second
 * listener on the same port (SO_REUSEPORT) and shutting the old one down gracefully.
 */
import { readWhole, splitPath, type WatchedFile } from "../shared/watch.ts";
import { denoFileSystem } from "./fs.ts";

export interface TlsFiles {
  tlsCert: string;
  tlsKey: string;
}

/**
 * A FileSystem for a file the operator names, rooted at its folder. Symlinks may lead anywhere:
 * these paths come from the operator, not from the image folder (certbot's live/, Secret ..data/).
 */
export const configFileSystem = (folder: string) => denoFileSystem(folder, { symlinks: { allowedRoots: ["/"] } });

export const watched = (path: string): WatchedFile => {
  const [folder, name] = splitPath(path);
  return { fs: configFileSystem(folder), path: name };
};

/** Certificate chain and key as Deno.serve takes them; throws with the reason when a file cannot be read. */
export async function loadTls(files: TlsFiles): Promise<Deno.TlsCertifiedKeyPem> {
  const [cert, key] = await Promise.all([readWhole(watched(files.tlsCert)), readWhole(watched(files.tlsKey))]);
  return pemPair(cert, key);
}

export function pemPair(cert: Uint8Array, key: Uint8Array): Deno.TlsCertifiedKeyPem {
  const text = (bytes: Uint8Array, what: string) => {
    const pem = new TextDecoder().decode(bytes);
    if (!pem.includes("-----BEGIN ")) throw new Error(`${what} is not PEM`);
    return pem;
  };
  return { cert: text(cert, "certificate"), key: text(key, "key") };
}
