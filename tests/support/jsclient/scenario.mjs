// One run of the official openEO JavaScript client (@openeo/js-client) against a live
// tileserver: connect, basic and OpenID Connect (client credentials) authentication,
// collections, processes, a synchronous result, a batch job, an XYZ and a WMTS service.
//
//   node scenario.mjs <config.json>
//
// config: {url, direct, user, password, wrong_password, oidc: {provider, client_id,
// client_secret} | null, graph (an openEO process graph ending in save_result), out (a folder
// for the downloaded files), tile: [z, x, y]}. JS_CLIENT_MODULES names the node_modules folder
// holding the client (tests/support/js_client.py installs it). Prints one JSON object: what
// each step saw, or {error, code, status} for a step that threw; the Python test asserts.

import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const require = createRequire(path.join(process.env.JS_CLIENT_MODULES, "noop.js"));
const { OpenEO } = require("@openeo/js-client");

const out = {};

function failure(err) {
  return { error: String(err && err.message || err), code: err && err.code || null,
           status: err && err.response && err.response.status || null };
}

async function step(name, fn) {
  try {
    out[name] = await fn();
  } catch (err) {
    out[name] = failure(err);
  }
  return out[name];
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function savedTo(stream, target) {
  await new Promise((resolve, reject) => {
    const file = fs.createWriteStream(target);
    stream.on("error", reject);
    file.on("error", reject);
    file.on("finish", resolve);
    stream.pipe(file);
  });
  return target;
}

const con = config.direct ? await OpenEO.connectDirect(config.url)
  : await OpenEO.connect(config.url);
const caps = con.capabilities();
out.connect = { apiVersion: caps.apiVersion(), baseUrl: con.getBaseUrl(),
                url: con.getUrl(), backendVersion: caps.backendVersion(),
                title: caps.title() };

await step("anonymous_account", async () => con.describeAccount());
await step("wrong_password", async () => {
  const other = await OpenEO.connectDirect(con.getBaseUrl());
  await other.authenticateBasic(config.user, config.wrong_password);
  return { authenticated: other.isAuthenticated() };
});

if (config.oidc) {
  await step("oidc", async () => {
    const other = await OpenEO.connectDirect(con.getBaseUrl());
    const providers = await other.listAuthProviders();
    const provider = providers.find((p) => p.getType() === "oidc"
      && p.getProviderId() === config.oidc.provider);
    if (!provider) {
      throw new Error(`no oidc provider ${config.oidc.provider} in ` +
                      providers.map((p) => p.getId()).join(", "));
    }
    provider.setGrant("client_credentials");
    provider.setClientId(config.oidc.client_id);
    provider.setClientSecret(config.oidc.client_secret);
    await provider.login();
    const account = await other.describeAccount();
    const jobs = await other.listJobs();
    return { providers: providers.map((p) => p.getId()), account,
             sent: other._getAuthHeaders().Authorization.split(" ")[1].split("/")
               .slice(0, -1), jobs: jobs.length };
  });
  await step("oidc_token", async () => {  // a token obtained elsewhere, set by hand
    const other = await OpenEO.connectDirect(con.getBaseUrl());
    const form = new URLSearchParams({ grant_type: "client_credentials", scope: "openid" });
    const auth = Buffer.from(`${config.oidc.client_id}:${config.oidc.client_secret}`)
      .toString("base64");
    const issuer = (await other.listAuthProviders())
      .find((p) => p.getProviderId() === config.oidc.provider).issuer;
    const resp = await fetch(`${issuer}/token`, { method: "POST", body: form,
      headers: { Authorization: `Basic ${auth}` } });
    const token = (await resp.json()).access_token;
    other.setAuthToken("oidc", config.oidc.provider, token);
    return { account: await other.describeAccount() };
  });
}

await con.authenticateBasic(config.user, config.password);
await step("account", async () => con.describeAccount());
out.basic_sent = con._getAuthHeaders().Authorization.split(" ")[1].split("/").length;

await step("collections", async () => {
  const list = await con.listCollections();
  const meta = await con.describeCollection("TEST");
  return { ids: list.collections.map((c) => c.id), id: meta.id,
           dimensions: Object.keys(meta["cube:dimensions"] || {}),
           bands: (meta["cube:dimensions"] || {}).bands
             ? meta["cube:dimensions"].bands.values : null,
           links: list.links ? list.links.length : null };
});

await step("processes", async () => {
  const list = await con.listProcesses();
  const ndvi = await con.describeProcess("ndvi");
  return { ids: list.processes.map((p) => p.id),
           ndvi: { id: ndvi.id, parameters: ndvi.parameters.map((p) => p.name) } };
});

await step("service_types", async () => Object.keys(await con.listServiceTypes()));
await step("file_types", async () => {
  const types = await con.listFileTypes();
  return { output: Object.keys(types.getOutputTypes()) };
});

const process_ = { process_graph: config.graph };

await step("validate", async () => con.validateProcess(process_));

await step("sync", async () => {
  const result = await con.computeResult(process_);
  const target = path.join(config.out, "sync.tif");
  await savedTo(result.data, target);
  return { type: result.type, file: target, bytes: fs.statSync(target).size };
});

await step("sync_error", async () => {
  const bad = { process_graph: { load: { process_id: "load_collection", arguments: {
    id: "NOPE", spatial_extent: null, temporal_extent: null }, result: true } } };
  await con.computeResult(bad);
  return { unexpected: "no error" };
});

await step("job", async () => {
  const job = await con.createJob(process_, `js client ${caps.apiVersion()}`);
  const created = (await job.describeJob()).status;
  await job.startJob();
  const statuses = [];
  const deadline = Date.now() + 240_000;
  let meta = await job.describeJob();
  while (!["finished", "error", "canceled"].includes(meta.status) && Date.now() < deadline) {
    statuses.push(meta.status);
    await sleep(500);
    meta = await job.describeJob();
  }
  statuses.push(meta.status);
  const listed = (await con.listJobs()).map((j) => j.id);
  const assets = await job.listResults();
  const folder = path.join(config.out, "job");
  fs.mkdirSync(folder, { recursive: true });
  const files = meta.status === "finished" ? await job.downloadResults(folder) : [];
  const logs = await job.debugJob().nextLogs();
  await job.deleteJob();
  const after = (await con.listJobs()).map((j) => j.id);
  return { id: job.id, title: meta.title, created, statuses, status: meta.status,
           listed: listed.includes(job.id), listed_after_delete: after.includes(job.id),
           assets: assets.map((a) => ({ href: a.href, type: a.type, roles: a.roles })),
           files, logs: logs.map((l) => l.message) };
});

await step("service", async () => {
  const service = await con.createService(process_, "XYZ", "js client tiles");
  const meta = await service.describeService();
  const [z, x, y] = config.tile;
  const url = meta.url.replace("{z}", z).replace("{x}", x).replace("{y}", y);
  const resp = await fetch(url);
  const body = Buffer.from(await resp.arrayBuffer());
  const listed = (await con.listServices()).map((s) => s.id);
  await service.deleteService();
  const gone = await fetch(url);
  return { id: service.id, type: meta.type, url: meta.url, enabled: meta.enabled,
           listed: listed.includes(service.id), tile_status: resp.status,
           tile_type: resp.headers.get("content-type"),
           tile_magic: body.subarray(0, 4).toString("hex"),
           status_after_delete: gone.status };
});

await step("wmts", async () => {  // a WMTS service: one tile by KVP GetTile
  const service = await con.createService(process_, "WMTS", "js client wmts");
  const meta = await service.describeService();
  const [layer] = meta.attributes.layers;
  const [z, x, y] = config.tile;
  const query = new URLSearchParams({ SERVICE: "WMTS", REQUEST: "GetTile", VERSION: "1.0.0",
    LAYER: layer, STYLE: "default", TILEMATRIXSET: "GoogleMapsCompatible", TILEMATRIX: z,
    TILEROW: y, TILECOL: x, FORMAT: "image/png" });
  const capabilities = await fetch(`${meta.url}?SERVICE=WMTS&REQUEST=GetCapabilities`);
  const text = await capabilities.text();
  const resp = await fetch(`${meta.url}?${query}`);
  const body = Buffer.from(await resp.arrayBuffer());
  await service.deleteService();
  return { type: meta.type, url: meta.url, layer,
           capabilities_status: capabilities.status,
           layer_in_capabilities: text.includes(`<ows:Identifier>${layer}</ows:Identifier>`),
           tile_status: resp.status, tile_type: resp.headers.get("content-type"),
           tile_magic: body.subarray(0, 4).toString("hex") };
});

process.stdout.write(JSON.stringify(out) + "\n");
