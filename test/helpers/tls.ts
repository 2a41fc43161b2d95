// Test certificates made with openssl: a CA, and server certificates it signs for loopback
// names (DNS:localhost, IP:127.0.0.1 and any extra names), valid for two days.
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import { run } from "./exec.ts";

export interface TestCa {
  /** PEM file of the CA certificate (what clients trust). */
  cert: string;
  key: string;
  /** A folder holding only `ca.crt`, for `skopeo --cert-dir`. */
  certDir: string;
}

export interface ServerCert {
  cert: string;
  key: string;
}

export async function makeCa(dir: string, name = "Test CA"): Promise<TestCa> {
  mkdirSync(dir, { recursive: true });
  const cert = join(dir, "ca.pem");
  const key = join(dir, "ca.key");
  await run("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", `/CN=${name}`]);
  const certDir = join(dir, "trust");
  mkdirSync(certDir, { recursive: true });
  await run("cp", [cert, join(certDir, "ca.crt")]);
  return { cert, key, certDir };
}

/**
 * A server certificate signed by `ca`, written to `<dir>/<base>.crt` and `.key`: both are made
 * beside and renamed into place, key first (as an operator replacing them would).
 */
export async function makeServerCert(ca: TestCa, dir: string, base = "tls", names: string[] = []): Promise<ServerCert> {
  mkdirSync(dir, { recursive: true });
  const tmp = join(dir, `.${base}-${process.pid}-${Date.now()}`);
  const ext = `${tmp}.ext`;
  const sans = ["DNS:localhost", "IP:127.0.0.1", ...names.map((n) => `DNS:${n}`)].join(",");
  writeFileSync(ext, `subjectAltName=${sans}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n`);
  await run("openssl", ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${tmp}.key`, "-out", `${tmp}.csr`, "-subj", "/CN=localhost"]);
  await run("openssl", ["x509", "-req", "-in", `${tmp}.csr`, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial", "-out", `${tmp}.crt`, "-days", "2", "-extfile", ext]);
  const cert = join(dir, `${base}.crt`);
  const key = join(dir, `${base}.key`);
  renameSync(`${tmp}.key`, key);
  renameSync(`${tmp}.crt`, cert);
  return { cert, key };
}

/** An htpasswd line with a bcrypt hash, as `htpasswd -nbB user password` prints it. */
export async function htpasswdLine(user: string, password: string, cost = 5): Promise<string> {
  const bcrypt = (await import("bcryptjs")).default;
  return `${user}:${bcrypt.hashSync(password, cost).replace(/^\$2b\$/, "$2y$")}`;
}

export const basicAuth = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

/** `GET https://127.0.0.1:PORT<path>` trusting `ca`, with optional headers: status and body. */
export function httpsGet(port: number, path: string, options: { ca?: string; headers?: Record<string, string>; servername?: string } = {}): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: "127.0.0.1", port, path, ca: options.ca, headers: options.headers, servername: options.servername, timeout: 5_000, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}
