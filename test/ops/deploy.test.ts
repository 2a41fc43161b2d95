/**
 * deploy/ checked offline: every Kubernetes manifest (the base and each overlay with its JSON
 * patches applied) against the Kubernetes OpenAPI schemas shipped in `kubernetes-models`, the
 * DaemonSet's settings the README promises (host network, read-only image folder, cache
 * emptyDir, probes, resources, non-root, read-only root, grace period), its arguments through
 * the registry's own option parser, and the Containerfile against what the build produces.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { builtinModules } from "node:module";
import { join, relative } from "node:path";
import { DaemonSet } from "kubernetes-models/apps/v1/DaemonSet";
import { Namespace } from "kubernetes-models/v1/Namespace";
import { beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { parseArgs, type ServerOptions } from "../../adapters/shared/options.ts";
import { ensureBuilt, REPO_ROOT } from "../helpers/server.ts";

const DEPLOY = join(REPO_ROOT, "deploy/kubernetes");
type Json = Record<string, unknown>;

function yamlDocs(file: string): unknown[] {
  return parseAllDocuments(readFileSync(file, "utf8")).map((doc) => {
    expect(doc.errors, `${file}: YAML errors`).toEqual([]);
    return doc.toJS();
  });
}

/** RFC 6902 add / replace / remove / test, on plain JSON (what kustomize's JSON patches use here). */
function applyJsonPatch(target: unknown, ops: Array<{ op: string; path: string; value?: unknown }>): unknown {
  const doc = structuredClone(target);
  for (const { op, path, value } of ops) {
    const keys = path.split("/").slice(1).map((k) => k.replace(/~1/g, "/").replace(/~0/g, "~"));
    const last = keys.pop()!;
    let parent = doc as Record<string, unknown>;
    for (const k of keys) {
      parent = parent[k] as Record<string, unknown>;
      if (parent === undefined) throw new Error(`${op} ${path}: ${k} does not exist`);
    }
    const list = Array.isArray(parent) ? (parent as unknown[]) : undefined;
    if (op === "test") expect(list ? list[Number(last)] : parent[last], `test ${path}`).toEqual(value);
    else if (op === "add" && list) list.splice(last === "-" ? list.length : Number(last), 0, value);
    else if (op === "add" || op === "replace") {
      if (op === "replace" && (list ? list[Number(last)] : parent[last]) === undefined) throw new Error(`replace ${path}: nothing there`);
      if (list) list[Number(last)] = value;
      else parent[last] = value;
    } else if (op === "remove") {
      if (list) list.splice(Number(last), 1);
      else delete parent[last];
    } else throw new Error(`unsupported op ${op}`);
  }
  return doc;
}

/** A kustomization's resources, with its JSON patches applied (enough of kustomize for these files). */
function build(dir: string): Json[] {
  const [k] = yamlDocs(join(dir, "kustomization.yaml")) as Array<{ resources?: string[]; patches?: Array<{ path: string; target: { kind: string; name: string } }> }>;
  let objects: Json[] = [];
  for (const resource of k.resources ?? []) {
    const path = join(dir, resource);
    objects.push(...(statSync(path).isDirectory() ? build(path) : (yamlDocs(path) as Json[])));
  }
  for (const patch of k.patches ?? []) {
    const [ops] = yamlDocs(join(dir, patch.path)) as Array<Array<{ op: string; path: string; value?: unknown }>>;
    let matched = 0;
    objects = objects.map((o) => {
      if (o.kind !== patch.target.kind || (o.metadata as Json)?.name !== patch.target.name) return o;
      matched++;
      return applyJsonPatch(o, ops) as Json;
    });
    expect(matched, `${patch.path} matches one object`).toBe(1);
  }
  return objects;
}

const MODELS: Record<string, new (data: never) => { validate(): void }> = { DaemonSet, Namespace };

function validate(object: Json): void {
  const Model = MODELS[String(object.kind)];
  expect(Model, `a schema for ${object.kind}`).toBeDefined();
  // Throws with the path of the first offence (a missing required field, a wrong type, an unknown enum value).
  new Model(object as never).validate();
}

interface Container {
  args: string[];
  ports: Array<{ name: string; containerPort: number; hostPort?: number }>;
  livenessProbe: { httpGet: { path: string; port: number | string } };
  readinessProbe: { httpGet: { path: string; port: number | string }; timeoutSeconds: number };
  resources: { requests: Record<string, string>; limits: Record<string, string> };
  securityContext: Json;
  volumeMounts: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
  image: string;
}

function podSpec(ds: Json) {
  return ((ds.spec as Json).template as Json).spec as Json & { containers: Container[]; volumes: Json[]; securityContext: Json; hostNetwork: boolean; terminationGracePeriodSeconds: number };
}

function optionsOf(container: Container): ServerOptions {
  const parsed = parseArgs(container.args, {});
  if (parsed.kind !== "run") throw new Error(`args give ${parsed.kind}`);
  return parsed.options;
}

const overlays = readdirSync(join(DEPLOY, "overlays"));
const builds: Array<[string, Json[]]> = [["base", build(join(DEPLOY, "base"))], ...overlays.map((o): [string, Json[]] => [`overlays/${o}`, build(join(DEPLOY, "overlays", o))])];

describe("deploy/kubernetes", () => {
  it("has the base and the nfs and tls-auth overlays", () => {
    expect(overlays.sort()).toEqual(["nfs", "tls-auth"]);
  });

  describe.each(builds)("%s", (_, objects) => {
    const ds = objects.find((o) => o.kind === "DaemonSet")!;
    const spec = podSpec(ds);
    const [container] = spec.containers;
    const options = optionsOf(container);

    it("validates against the Kubernetes schemas", () => {
      expect(objects.map((o) => o.kind).sort()).toEqual(["DaemonSet", "Namespace"]);
      for (const object of objects) validate(object);
      expect((ds.metadata as Json).namespace).toBe((objects.find((o) => o.kind === "Namespace")!.metadata as Json).name);
    });

    it("passes arguments the registry accepts, ports that match them", () => {
      expect(options.dir).toBe("/images");
      const port = (name: string) => container.ports.find((p) => p.name === name)!;
      expect(port("registry").containerPort).toBe(options.port);
      expect(port("metrics").containerPort).toBe(options.metricsPort);
      // With hostNetwork, hostPort must equal containerPort.
      for (const p of container.ports) expect(p.hostPort ?? p.containerPort).toBe(p.containerPort);
    });

    it("runs on the host network on every node", () => {
      expect(spec.hostNetwork).toBe(true);
      expect(spec.tolerations).toEqual([{ operator: "Exists" }]);
    });

    it("mounts the image folder read-only and the cache on an emptyDir", () => {
      const mount = (name: string) => container.volumeMounts.find((m) => m.name === name)!;
      const volume = (name: string) => spec.volumes.find((v) => v.name === name)!;
      expect(mount("images")).toEqual({ name: "images", mountPath: options.dir, readOnly: true });
      const images = volume("images");
      expect(images.hostPath ?? images.nfs).toBeDefined();
      if (images.nfs) expect((images.nfs as Json).readOnly).toBe(true);
      expect(mount("cache").mountPath).toBe(options.cacheDir);
      expect(volume("cache").emptyDir).toBeDefined();
      for (const m of container.volumeMounts) if (m.name !== "cache" && m.name !== "tmp") expect(m.readOnly, `${m.name} is read-only`).toBe(true);
    });

    it("probes /healthz for liveness and /readyz for readiness, where the registry serves them", () => {
      expect(container.livenessProbe.httpGet.path).toBe("/healthz");
      expect(container.readinessProbe.httpGet.path).toBe("/readyz");
      for (const probe of [container.livenessProbe, container.readinessProbe]) expect(probe.httpGet.port).toBe(options.metricsPort ?? options.port);
      // The registry answers 503 after 5 s when the folder hangs: inside the probe's timeout.
      expect(container.readinessProbe.timeoutSeconds).toBeGreaterThan(5);
    });

    it("sets requests and limits, non-root, a read-only root filesystem, no capabilities", () => {
      expect(Object.keys(container.resources.requests).sort()).toEqual(["cpu", "memory"]);
      expect(Object.keys(container.resources.limits).sort()).toEqual(["cpu", "memory"]);
      expect(spec.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: expect.any(Number) });
      expect(spec.securityContext.runAsUser).not.toBe(0);
      expect(container.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } });
      expect(spec.automountServiceAccountToken).toBe(false);
    });

    it("gives kubelet's grace period the registry's --shutdown-grace and a little more", () => {
      const grace = options.shutdownGraceMs / 1000;
      expect(spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(grace + 1);
      expect(spec.terminationGracePeriodSeconds).toBeLessThanOrEqual(grace + 15);
    });
  });

  it("tls-auth: the flags point into the mounted Secrets", () => {
    const ds = builds.find(([n]) => n === "overlays/tls-auth")![1].find((o) => o.kind === "DaemonSet")!;
    const [container] = podSpec(ds).containers;
    const options = optionsOf(container);
    const under = (file: string | undefined, volume: string) => {
      const mount = container.volumeMounts.find((m) => m.name === volume)!;
      expect(file?.startsWith(`${mount.mountPath}/`), `${file} is in volume ${volume}`).toBe(true);
    };
    under(options.tlsCert, "tls");
    under(options.tlsKey, "tls");
    under(options.htpasswd, "htpasswd");
    const secrets = podSpec(ds).volumes.filter((v) => v.secret).map((v) => (v.secret as Json).secretName);
    expect(secrets.sort()).toEqual(["registry-htpasswd", "registry-tls"]);
  });

  it("a schema violation is caught (the check is real)", () => {
    const ds = structuredClone(builds[0][1].find((o) => o.kind === "DaemonSet")!);
    (podSpec(ds).containers[0].ports[0] as Json).containerPort = "five thousand";
    expect(() => validate(ds)).toThrow(/containerPort/);
  });
});

describe("deploy/Containerfile", () => {
  beforeAll(() => ensureBuilt(), 300_000);
  const text = readFileSync(join(REPO_ROOT, "deploy/Containerfile"), "utf8");
  const lines = text.split("\n").filter((l) => l.trim() && !l.startsWith("#"));

  it("builds from Node 20 slim and runs dist/node/cli.js as a non-root user", () => {
    const froms = lines.filter((l) => l.startsWith("FROM "));
    expect(froms.length).toBe(2);
    for (const f of froms) expect(f).toMatch(/node:20-bookworm-slim/);
    expect(lines.find((l) => l.startsWith("ENTRYPOINT"))).toBe('ENTRYPOINT ["node", "/app/dist/node/cli.js"]');
    expect(lines.find((l) => l.startsWith("USER"))).toMatch(/^USER 65532(:65532)?$/);
    expect(text).toContain("npm prune --omit=dev");
  });

  it("copies only what exists in the repository, and the ignore file lets it through", () => {
    const ignore = readFileSync(join(REPO_ROOT, "deploy/Containerfile.dockerignore"), "utf8");
    for (const line of lines.filter((l) => l.startsWith("COPY ") && !l.includes("--from="))) {
      const sources = line.slice(5).trim().split(/\s+/).slice(0, -1);
      for (const source of sources) {
        expect(statSync(join(REPO_ROOT, source)).isFile() || statSync(join(REPO_ROOT, source)).isDirectory(), source).toBe(true);
        expect(ignore).toMatch(new RegExp(`^!${source.replace(/\./g, "\\.")}/?$`, "m"));
      }
    }
  });

  it("the runtime image's node_modules (production dependencies) has every package dist/ imports", () => {
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as { dependencies: Record<string, string> };
    // dist/node/*.js and the chunks they share in dist/ (dist/deno/ is Deno's self-contained file).
    const dist = join(REPO_ROOT, "dist");
    const files = readdirSync(dist, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".js") && !f.startsWith("deno/"));
    const bare = new Set<string>();
    for (const file of files) {
      const src = readFileSync(join(dist, file), "utf8");
      for (const m of src.matchAll(/(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*["']([^"'./][^"']*)["']|import\(\s*["']([^"'./][^"']*)["']\s*\)/gm)) {
        const spec = m[1] ?? m[2];
        if (spec.startsWith("node:") || builtinModules.includes(spec)) continue;
        bare.add(spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]);
      }
    }
    expect(bare.size, `bare imports found in ${relative(REPO_ROOT, dist)}`).toBeGreaterThan(0);
    for (const name of bare) expect(Object.keys(pkg.dependencies), `${name} is a production dependency`).toContain(name);
  });
});
