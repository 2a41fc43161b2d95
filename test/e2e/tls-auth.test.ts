// skopeo against the registry with --tls-cert/--tls-key and --htpasswd: trusting a test CA
// (made here with openssl), with and without credentials, the password file and the
// certificate changed while the server runs, and /metrics and the probes on --metrics-port.
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { run } from "../helpers/exec.ts";
import { describeRuntimes, REPO_ROOT, runtimeCommand, sleep, startServer, type RunningServer } from "../helpers/server.ts";
import { basicAuth, htpasswdLine, httpsGet, makeCa, makeServerCert, type TestCa } from "../helpers/tls.ts";
import { describeWithTools } from "../helpers/tools.ts";

describeWithTools(["skopeo", "openssl"], "skopeo over TLS with htpasswd auth", () => {
  // The whole sequence (certificate and password changes included) on each runtime.
  describeRuntimes((runtime) => {
    let work: string;
    let ca: TestCa;
    let server: RunningServer;
    let helloDigest: string;
    let operationsUrl: string;
    const ref = () => `docker://localhost:${server.port}/hello:latest`;

    /** Writes the password file beside and renames it into place, as a Secret update does. */
    const writeHtpasswd = (lines: string[]) => {
      writeFileSync(join(work, ".htpasswd.new"), `${lines.join("\n")}\n`);
      renameSync(join(work, ".htpasswd.new"), join(work, "htpasswd"));
    };
    const skopeo = (args: string[]) => run("skopeo", args, { timeout: 60_000 });
    const inspect = (certDir: string, creds?: string) => skopeo(["inspect", "--cert-dir", certDir, ...(creds ? ["--creds", creds] : []), ref()]);
    /** Waits until the server logs `msg` (after `from` lines). */
    const logged = async (msg: string, from: number) => {
      for (let i = 0; i < 100; i++) {
        if (server.logLines().slice(from).some((l) => l.msg === msg)) return;
        await sleep(100);
      }
      throw new Error(`no "${msg}" in the log:\n${server.logs().slice(-2000)}`);
    };

    beforeAll(async () => {
      work = mkdtempSync(join(tmpdir(), "e2e-tls-auth-"));
      mkdirSync(join(work, "images"));
      copyFileSync(join(REPO_ROOT, "examples/hello.oci"), join(work, "images/hello.oci"));
      helloDigest = JSON.parse(spawnSync("tar", ["-xOf", join(work, "images/hello.oci"), "index.json"], { encoding: "utf8" }).stdout).manifests[0].digest;
      ca = await makeCa(join(work, "ca"));
      const tls = await makeServerCert(ca, join(work, "tls"));
      writeHtpasswd([await htpasswdLine("alice", "wonderland")]);
      server = await startServer({
        dir: join(work, "images"),
        runtime,
        args: ["--tls-cert", tls.cert, "--tls-key", tls.key, "--htpasswd", join(work, "htpasswd"), "--auth-realm", "Test Images", "--watch-interval", "200ms", "--metrics-port", "0"],
        probe: async (port) => (await httpsGet(port, "/v2/", { ca: readFileSync(ca.cert, "utf8"), headers: { authorization: basicAuth("alice", "wonderland") } })).status,
      });
      operationsUrl = String(server.logLines().find((l) => l.msg === "listening")?.operations);
      expect(operationsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    }, 120_000);

    afterAll(async () => {
      await server?.stop();
      if (work) rmSync(work, { recursive: true, force: true });
    });

    test("skopeo inspect trusts the test CA (--cert-dir) and sends --creds", async () => {
      const { stdout } = await inspect(ca.certDir, "alice:wonderland");
      expect(JSON.parse(stdout).Digest).toBe(helloDigest);
    });

    test("skopeo copy --all with --src-cert-dir and --src-creds keeps every digest", async () => {
      const dest = join(work, "copy");
      await skopeo(["--insecure-policy", "copy", "--quiet", "--all", "--preserve-digests", "--src-cert-dir", ca.certDir, "--src-creds", "alice:wonderland", ref(), `oci:${dest}:latest`]);
      const index = JSON.parse(readFileSync(join(dest, "index.json"), "utf8"));
      expect(index.manifests[0].digest).toBe(helloDigest);
    });

    test("no credentials, a wrong password or an unknown user: unauthorized", async () => {
      await expect(inspect(ca.certDir)).rejects.toThrow(/unauthorized|authentication required/i);
      await expect(inspect(ca.certDir, "alice:looking-glass")).rejects.toThrow(/unauthorized|authentication required/i);
      await expect(inspect(ca.certDir, "mallory:wonderland")).rejects.toThrow(/unauthorized|authentication required/i);
    });

    test("without the CA, skopeo does not trust the certificate", async () => {
      const empty = join(work, "no-ca");
      mkdirSync(empty, { recursive: true });
      await expect(inspect(empty, "alice:wonderland")).rejects.toThrow(/certificate signed by unknown authority|x509/);
    });

    test("401 on /v2/ carries WWW-Authenticate with the realm and the UNAUTHORIZED envelope", async () => {
      const res = await httpsGet(server.port, "/v2/", { ca: readFileSync(ca.cert, "utf8") });
      expect(res.status).toBe(401);
      expect(res.headers["www-authenticate"]).toBe('Basic realm="Test Images"');
      expect(res.headers["docker-distribution-api-version"]).toBe("registry/2.0");
      expect(JSON.parse(res.body).errors[0].code).toBe("UNAUTHORIZED");
    });

    test("the password file is re-read when it changes", async () => {
      writeHtpasswd([await htpasswdLine("bob", "builder")]);
      let bob = 0;
      for (let i = 0; i < 50 && bob !== 200; i++) {
        await sleep(100);
        bob = (await httpsGet(server.port, "/v2/", { ca: readFileSync(ca.cert, "utf8"), headers: { authorization: basicAuth("bob", "builder") } })).status;
      }
      expect(bob).toBe(200);
      expect(JSON.parse((await inspect(ca.certDir, "bob:builder")).stdout).Digest).toBe(helloDigest);
      await expect(inspect(ca.certDir, "alice:wonderland")).rejects.toThrow(/unauthorized|authentication required/i);
      writeHtpasswd([await htpasswdLine("alice", "wonderland"), await htpasswdLine("bob", "builder")]);
      await sleep(600);
    });

    test("/metrics, /healthz and /readyz on --metrics-port, plain HTTP and without credentials", async () => {
      expect(await (await fetch(`${operationsUrl}/healthz`)).text()).toBe("ok\n");
      expect((await fetch(`${operationsUrl}/readyz`)).status).toBe(200);
      const metrics = await (await fetch(`${operationsUrl}/metrics`)).text();
      expect(metrics).toMatch(/simple_oci_registry_http_requests_total\{route="manifest",method="GET",status="200"\} [1-9]/);
      expect(metrics).toMatch(/simple_oci_registry_auth_failures_total\{reason="wrong"\} [1-9]/);
      expect(metrics).toMatch(/simple_oci_registry_http_response_bytes_total\{route="blob"\} [1-9]/);
      // Not on the main port when they have their own.
      expect((await httpsGet(server.port, "/metrics", { ca: readFileSync(ca.cert, "utf8") })).status).toBe(404);
    });

    test("a key that does not match the new certificate is refused; the old pair stays in use", async () => {
      const other = await makeCa(join(work, "other-ca"), "Other CA");
      const stray = await makeServerCert(other, join(work, "stray"));
      const from = server.logLines().length;
      copyFileSync(stray.cert, join(work, "tls/.tls.crt.new"));
      renameSync(join(work, "tls/.tls.crt.new"), join(work, "tls/tls.crt"));
      await logged("tls certificate not reloaded, keeping the previous one", from);
      expect(JSON.parse((await inspect(ca.certDir, "alice:wonderland")).stdout).Digest).toBe(helloDigest);
    });

    test("a new certificate from another CA is picked up while the server runs", async () => {
      const next = await makeCa(join(work, "next-ca"), "Next CA");
      const from = server.logLines().length;
      await makeServerCert(next, join(work, "tls"));
      await logged("tls certificate reloaded", from);
      expect(JSON.parse((await inspect(next.certDir, "alice:wonderland")).stdout).Digest).toBe(helloDigest);
      await expect(inspect(ca.certDir, "alice:wonderland")).rejects.toThrow(/certificate signed by unknown authority|x509/);
    });

    test("start-up fails with one line for a missing password file or a mismatched pair", async () => {
      const cli = async (args: string[]) => {
        const command = await runtimeCommand(runtime, ["--dir", join(work, "images"), "--port", "0", ...args]);
        return spawnSync(command.command, command.args, { encoding: "utf8", timeout: 20_000, env: { ...process.env, ...command.env } });
      };
      const missing = await cli(["--htpasswd", join(work, "nope")]);
      expect(missing.status).toBe(1);
      expect(missing.stderr.trim()).toBe(`simple-oci-registry: --htpasswd ${join(work, "nope")}: nope: no such file`);
      writeFileSync(join(work, "md5"), "carol:$apr1$abcdefgh$0123456789abcdefghijkl\n");
      const md5 = await cli(["--htpasswd", join(work, "md5")]);
      expect(md5.status).toBe(1);
      expect(md5.stderr).toContain("no bcrypt entries");
      const other = await makeServerCert(await makeCa(join(work, "third-ca")), join(work, "third"));
      // tls/tls.key belongs to the "Next CA" certificate, not to `other`.
      const mismatch = await cli(["--tls-cert", other.cert, "--tls-key", join(work, "tls/tls.key")]);
      expect(mismatch.status).toBe(1);
      expect(mismatch.stderr.trim().split("\n")).toHaveLength(1);
      expect(mismatch.stderr).toMatch(/--tls-cert .* \/ --tls-key .*: .*(key values mismatch|KEY_VALUES_MISMATCH|KeyMismatch)/i); // OpenSSL's words on Node, rustls' on Deno
    });
  });
});
