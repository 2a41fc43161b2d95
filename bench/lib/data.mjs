// Lays out everything the servers serve, under one data folder:
//   layouts/<image>/          OCI layouts (skopeo pushes these to distribution)
//   archives/                 the .oci archives, once each
//   serve/images/             big.oci, small.oci          (throughput, wrk)
//   serve/cold/, serve/empty/ big.oci alone; nothing      (cold start)
//   serve/plain/, serve/gzip/ mid.oci, plain and gzipped  (first pull)
//   serve/few/, serve/many/   10 and 10,000 small archives (lookup, 404)
//   static/v2/...             the same bytes as static files for nginx
// Folders under serve/ hold hard links, so each archive is on disk (and in the page cache) once.
// A marker records the parameters; a later run with the same parameters reuses the data.
import { existsSync, linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipFile, smallArchive, writeImage } from "./oci.mjs";

export const LOOKUP_TAGS = 10;

/** Names of the small archives: `app-00000` ... */
export const appName = (i) => `app-${String(i).padStart(5, "0")}`;

function link(from, to) {
  mkdirSync(join(to, ".."), { recursive: true });
  rmSync(to, { force: true });
  linkSync(from, to);
}

export async function prepareData(dataDir, params, log) {
  const markerFile = join(dataDir, "data.json");
  const wanted = JSON.stringify(params);
  if (existsSync(markerFile)) {
    const marker = JSON.parse(readFileSync(markerFile, "utf8"));
    if (JSON.stringify(marker.params) === wanted) {
      log(`reusing generated data in ${dataDir}`);
      return marker.images;
    }
  }
  rmSync(dataDir, { recursive: true, force: true });
  mkdirSync(join(dataDir, "archives"), { recursive: true });
  const started = Date.now();

  const images = {};
  for (const [name, size] of [["big", params.bigBytes], ["small", params.smallBytes], ["mid", params.midBytes]]) {
    log(`generating ${name}: ${size} byte layer`);
    images[name] = writeImage({
      name,
      seed: `${params.seed}:${name}`,
      layerSize: size,
      layoutDir: join(dataDir, "layouts", name),
      archive: join(dataDir, "archives", `${name}.oci`),
    });
  }
  log("compressing mid.oci");
  await gzipFile(join(dataDir, "archives", "mid.oci"), join(dataDir, "archives", "mid.oci.gz"));

  const serve = join(dataDir, "serve");
  link(join(dataDir, "archives", "big.oci"), join(serve, "images", "big.oci"));
  link(join(dataDir, "archives", "small.oci"), join(serve, "images", "small.oci"));
  link(join(dataDir, "archives", "big.oci"), join(serve, "cold", "big.oci"));
  mkdirSync(join(serve, "empty"), { recursive: true });
  link(join(dataDir, "archives", "mid.oci"), join(serve, "plain", "mid.oci"));
  link(join(dataDir, "archives", "mid.oci.gz"), join(serve, "gzip", "mid.oci"));

  log(`generating ${params.manyArchives} small archives with ${LOOKUP_TAGS} tags each`);
  const tags = Array.from({ length: LOOKUP_TAGS }, (_, i) => `v${i}`);
  mkdirSync(join(serve, "many"), { recursive: true });
  mkdirSync(join(serve, "few"), { recursive: true });
  for (let i = 0; i < params.manyArchives; i++) {
    const file = join(serve, "many", `${appName(i)}.oci`);
    writeFileSync(file, smallArchive(appName(i), tags, `${params.seed}:app:${i}`));
    if (i < params.fewArchives) link(file, join(serve, "few", `${appName(i)}.oci`));
  }

  // nginx: the blob and manifest bytes as files at the registry's URL paths.
  const staticDir = join(dataDir, "static");
  for (const name of ["big", "small"]) {
    const img = images[name];
    link(img.layerFile, join(staticDir, "v2", name, "blobs", img.layerDigest));
    mkdirSync(join(staticDir, "v2", name, "manifests"), { recursive: true });
    writeFileSync(join(staticDir, "v2", name, "manifests", "latest"), img.manifest);
  }

  writeFileSync(markerFile, JSON.stringify({ params, images, seconds: (Date.now() - started) / 1000 }, null, 2));
  log(`data ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return images;
}
