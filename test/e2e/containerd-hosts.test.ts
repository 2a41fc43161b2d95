// containerd pulls through the hosts.toml files in deploy/containerd/, as a node would use them:
// a node-local name (`images.local:PORT`) and a mirror of another registry (`registry.example`,
// `docker.io`), each over plain HTTP and over TLS with credentials in hosts.toml. The examples
// are copied with `images.local:5000` made to point at this test's server on 127.0.0.1:PORT
// (the hosts folder keeps the node-local name: that is the alias). The mirror pulls prove that
// containerd asked the mirror first: registry.example cannot be reached from here.
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { image, layout, packTar, ref } from "../fixtures/oci.ts";
import { CONTAINERD_TOOLS, startContainerd, type Containerd } from "../helpers/containerd.ts";
import { REPO_ROOT, startServer, type RunningServer } from "../helpers/server.ts";
import { basicAuth, htpasswdLine, httpsGet, makeCa, makeServerCert, type TestCa } from "../helpers/tls.ts";
import { describeWithTools } from "../helpers/tools.ts";

const EXAMPLES = join(REPO_ROOT, "deploy/containerd");
const PUBLIC = "images.local:5000";

// What the folder holds. The same name in the usual place and under the ns folder, with
// different content, shows which one --ns-dirs picked.
const usualApp = image({ layers: [{ "app.txt": "team/app from the usual place\n" }] });
const mirroredApp = image({ layers: [{ "app.txt": "team/app from <dir>/registry.example/\n" }] });
const hubHello = image({ layers: [{ "hello.txt": "docker.io/library/hello from <dir>/docker.io/\n" }] });

/** Copies an example hosts folder, pointing `images.local:5000` at `address` (`127.0.0.1:PORT`). */
function hostsDir(example: string, into: string, port: number, replace: (text: string) => string = (t) => t): string {
  const root = join(into, `${example}-${port}`);
  for (const entry of readdirSync(join(EXAMPLES, example))) {
    const folder = join(root, entry.replace(PUBLIC, `images.local:${port}`));
    mkdirSync(folder, { recursive: true });
    const text = readFileSync(join(EXAMPLES, example, entry, "hosts.toml"), "utf8");
    writeFileSync(join(folder, "hosts.toml"), replace(text.replace(/(https?):\/\/images\.local:5000/g, `$1://127.0.0.1:${port}`)));
  }
  return root;
}

describeWithTools([...CONTAINERD_TOOLS, "openssl"], "containerd pulls through deploy/containerd's hosts.toml files", () => {
  let work: string;
  let containerd: Containerd;
  let plain: RunningServer;
  let secure: RunningServer;
  let ca: TestCa;
  let namespaces = 0;
  const hello = { digest: "" };

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "e2e-ctr-hosts-"));
    const dir = join(work, "images");
    mkdirSync(join(dir, "team/app"), { recursive: true });
    mkdirSync(join(dir, "registry.example/team/app"), { recursive: true });
    mkdirSync(join(dir, "docker.io/library/hello"), { recursive: true });
    copyFileSync(join(REPO_ROOT, "examples/hello.oci"), join(dir, "hello.oci"));
    writeFileSync(join(dir, "team/app/1.0.oci"), await packTar(layout([{ image: usualApp }])));
    writeFileSync(join(dir, "registry.example/team/app/1.0.oci"), await packTar(layout([{ image: mirroredApp }])));
    writeFileSync(join(dir, "docker.io/library/hello/latest.oci"), await packTar(layout([{ image: hubHello, annotations: ref("docker.io/library/hello:latest") }])));
    const index = JSON.parse((await import("node:child_process")).execFileSync("tar", ["-xOf", join(dir, "hello.oci"), "index.json"], { encoding: "utf8" }));
    hello.digest = index.manifests[0].digest;

    ca = await makeCa(join(work, "ca"));
    const tls = await makeServerCert(ca, join(work, "tls"));
    writeFileSync(join(work, "htpasswd"), `${await htpasswdLine("puller", "secret")}\n`);

    containerd = await startContainerd();
    plain = await startServer({ dir, args: ["--ns-dirs"] });
    secure = await startServer({
      dir,
      args: ["--ns-dirs", "--tls-cert", tls.cert, "--tls-key", tls.key, "--htpasswd", join(work, "htpasswd"), "--metrics-port", "0"],
      probe: async (port) => (await httpsGet(port, "/v2/", { ca: readFileSync(ca.cert, "utf8"), headers: { authorization: basicAuth("puller", "secret") } })).status,
    });
  }, 180_000);

  afterAll(async () => {
    await plain?.stop();
    await secure?.stop();
    await containerd?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** `ctr images pull --hosts-dir DIR REF` into a fresh namespace; the pulled image's digest. */
  async function pull(hosts: string, ref: string): Promise<string> {
    const namespace = `hosts${++namespaces}`;
    await containerd.ctr(["images", "pull", "--hosts-dir", hosts, "--snapshotter", "native", ref], { namespace });
    const pulled = (await containerd.images({ namespace })).find((i) => i.ref === ref);
    expect(pulled, `ctr images check lists ${ref}`).toBeDefined();
    expect(pulled!.status).toMatch(/^complete/);
    expect(pulled!.unpacked).toBe(true);
    return pulled!.digest;
  }

  const withCredentials = (text: string) => text.replaceAll("/etc/containerd/certs.d/images.local:5000/ca.crt", ca.cert);

  test("the example files are what the README shows (server, host, capabilities)", () => {
    const text = readFileSync(join(EXAMPLES, "mirror/registry.example/hosts.toml"), "utf8");
    expect(text).toContain('server = "https://registry.example"');
    expect(text).toContain('[host."http://images.local:5000"]');
    expect(text).toContain('capabilities = ["pull", "resolve"]');
    expect(statSync(join(EXAMPLES, "node-local", PUBLIC, "hosts.toml")).isFile()).toBe(true);
  });

  test("node-local name, plain HTTP: images.local:PORT/hello:latest", async () => {
    const hosts = hostsDir("node-local", work, plain.port);
    expect(await pull(hosts, `images.local:${plain.port}/hello:latest`)).toBe(hello.digest);
    expect(await pull(hosts, `images.local:${plain.port}/team/app:1.0`)).toBe(usualApp.manifest.digest);
  });

  test("mirror of registry.example, plain HTTP: served from <dir>/registry.example/ with ?ns=", async () => {
    const hosts = hostsDir("mirror", work, plain.port);
    const before = plain.logLines().length;
    expect(await pull(hosts, "registry.example/team/app:1.0")).toBe(mirroredApp.manifest.digest);
    const requests = plain.logLines().slice(before).filter((l) => l.msg === "request" && String(l.path).startsWith("/v2/team/app/"));
    expect(requests.length).toBeGreaterThan(0);
    for (const r of requests) expect(String(r.path)).toMatch(/[?&]ns=registry\.example(&|$)/);
    // Not in the ns folder: the usual candidates answer (registry.example/hello -> hello.oci).
    expect(await pull(hosts, "registry.example/hello:latest")).toBe(hello.digest);
  });

  test("mirror of docker.io: hello:latest resolves as docker.io/library/hello from <dir>/docker.io/", async () => {
    const hosts = hostsDir("mirror", work, plain.port);
    expect(await pull(hosts, "docker.io/library/hello:latest")).toBe(hubHello.manifest.digest);
  });

  test("node-local name over TLS with credentials in hosts.toml", async () => {
    const hosts = hostsDir("tls-auth", work, secure.port, withCredentials);
    expect(await pull(hosts, `images.local:${secure.port}/hello:latest`)).toBe(hello.digest);
    const statuses = secure.logLines().filter((l) => l.msg === "request").map((l) => l.status);
    expect(statuses).toContain(200);
  });

  test("mirror over TLS with credentials in hosts.toml", async () => {
    const hosts = hostsDir("tls-auth", work, secure.port, withCredentials);
    expect(await pull(hosts, "registry.example/team/app:1.0")).toBe(mirroredApp.manifest.digest);
  });

  test("without the credentials header the TLS registry refuses the pull", async () => {
    const hosts = hostsDir("tls-auth", join(work, "nocreds"), secure.port, (t) => withCredentials(t).replace(/\n\s*\[host\.[^\n]*\.header\]\n\s*authorization = "[^"]*"/, ""));
    expect(readFileSync(join(hosts, `images.local:${secure.port}`, "hosts.toml"), "utf8")).not.toContain("authorization");
    await expect(pull(hosts, `images.local:${secure.port}/hello:latest`)).rejects.toThrow(/401|unauthorized/i);
  });

  test("without the CA containerd does not trust the certificate", async () => {
    const hosts = hostsDir("tls-auth", join(work, "noca"), secure.port, (t) => t.replace(/\n\s*ca = "[^"]*"/, ""));
    await expect(pull(hosts, `images.local:${secure.port}/hello:latest`)).rejects.toThrow(/certificate|x509/i);
  });
});
