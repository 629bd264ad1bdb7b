/**
 * deploy/kubernetes/*.yaml: every document is checked against strict JSON Schemas of the Kubernetes API
 * (no cluster needed), then the facts that tie the manifests to the proxy are checked across documents.
 *
 * Where the schemas come from: no package on the npm registry ships the JSON Schemas of a recent
 * Kubernetes release as files (kubernetes-models ships them only as compiled validators that accept any
 * unknown field; older packages stop at 1.17). The official JavaScript client, @kubernetes/client-node, is
 * generated from the Kubernetes OpenAPI document (release-1.36 for 2.0.x) and keeps, for every API type,
 * its fields with their types (attributeTypeMap) and which ones are required (its .d.ts). That is turned
 * into draft-07 schemas here, with additionalProperties: false everywhere, as kubectl's strict field
 * validation does, so a misspelled field fails instead of being dropped silently by the API server.
 */
import t from 'tap';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { parseAllDocuments } from 'yaml';
import * as models from '@kubernetes/client-node/dist/gen/models/all.js';
import type {
  V1Container,
  V1Deployment,
  V1PodSpec,
  V1Probe,
  V1Service,
} from '@kubernetes/client-node/dist/gen/models/all.js';
import { projectRoot } from '../../src/project-root.js';

// The subtest type, as the callback of t.test receives it (tap exports no name for it with its plugins).
type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];

const DIR = join(projectRoot(), 'deploy', 'kubernetes');
const PROXY = 'llama-status-proxy';
// Proxy defaults: drainTimeoutMs 25 s, then stopGraceMs 10 s for llama-server; plus a margin.
const MIN_GRACE_SECONDS = 25 + 10 + 5;

// ---- schemas from the client's generated models

interface Attribute {
  name: string;
  baseName: string;
  type: string;
  format: string;
}
type Schema = Record<string, unknown>;

const MODELS_DIR = dirname(fileURLToPath(import.meta.resolve('@kubernetes/client-node/dist/gen/models/all.js')));

const modelTable = new Map<string, Attribute[]>();
for (const [name, value] of Object.entries(models)) {
  const attrs = (value as { attributeTypeMap?: unknown }).attributeTypeMap;
  if (typeof value === 'function' && Array.isArray(attrs)) modelTable.set(name, attrs as Attribute[]);
}

function typeSchema(type: string, format: string): Schema {
  if (type.startsWith('Array<')) return { type: 'array', items: typeSchema(type.slice(6, -1), '') };
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map?.[1] !== undefined) return { type: 'object', additionalProperties: typeSchema(map[1], '') };
  switch (type) {
    case 'string':
    case 'Date':
    case 'V1MicroTime':
      // Quantities (cpu: "4") are strings in the client, so manifests quote them.
      return { type: 'string' };
    case 'number':
      return { type: format.startsWith('int') ? 'integer' : 'number' };
    case 'boolean':
      return { type: 'boolean' };
    case 'IntOrString':
      return { type: ['integer', 'string'] };
    case 'any':
      return {};
  }
  if (modelTable.has(type)) return { $ref: `#/definitions/${type}` };
  throw new Error(`no schema for client type ${type}`);
}

/** The generator marks a required field by leaving out the `?`: `'name': string;` vs `'image'?: string;`. */
function requiredFields(model: string, attrs: Attribute[]): string[] {
  const dts = readFileSync(join(MODELS_DIR, `${model}.d.ts`), 'utf8');
  const required = new Set([...dts.matchAll(/^\s+'([^']+)':/gm)].map((m) => m[1]));
  return attrs.filter((a) => required.has(a.name)).map((a) => a.baseName);
}

function buildDefinitions(): Record<string, Schema> {
  const definitions: Record<string, Schema> = {};
  for (const [model, attrs] of modelTable) {
    const properties = Object.fromEntries(attrs.map((a) => [a.baseName, typeSchema(a.type, a.format)]));
    const required = requiredFields(model, attrs);
    definitions[model] = {
      type: 'object',
      properties,
      additionalProperties: false,
      ...(required.length > 0 ? { required } : {}),
    };
  }
  return definitions;
}

const ajv = new Ajv({ allErrors: true, allowUnionTypes: true });
ajv.addSchema({ $id: 'k8s', definitions: buildDefinitions() });

/** apps/v1 Deployment -> V1Deployment, v1 Service -> V1Service: the client's naming. */
function validatorFor(apiVersion: unknown, kind: unknown): ValidateFunction {
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') throw new Error('document without apiVersion/kind');
  const version = apiVersion.split('/').pop() ?? '';
  const model = version.charAt(0).toUpperCase() + version.slice(1) + kind;
  const validate = modelTable.has(model) ? ajv.getSchema(`k8s#/definitions/${model}`) : undefined;
  if (validate === undefined) throw new Error(`no schema for ${apiVersion} ${kind}`);
  return validate;
}

function schemaErrors(doc: Record<string, unknown>): ErrorObject[] {
  const validate = validatorFor(doc['apiVersion'], doc['kind']);
  return validate(doc) ? [] : (validate.errors ?? []);
}

const show = (errors: ErrorObject[]): string => errors.map((e) => `${e.instancePath} ${e.message} ${JSON.stringify(e.params)}`).join('\n');

// ---- the manifests

interface Manifest {
  file: string;
  docs: Record<string, unknown>[];
}

function loadManifests(): Manifest[] {
  return readdirSync(DIR)
    .filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'))
    .sort()
    .map((file) => {
      const parsed = parseAllDocuments(readFileSync(join(DIR, file), 'utf8'));
      if (!Array.isArray(parsed)) throw new Error(`${file}: empty`);
      const docs = parsed.map((d, i) => {
        if (d.errors.length > 0) throw new Error(`${file} document ${i}: ${d.errors.map((e) => e.message).join('; ')}`);
        return d.toJS() as Record<string, unknown>;
      });
      return { file, docs };
    });
}

const manifests = loadManifests();
const byKind = <T>(m: Manifest, kind: string): T[] => m.docs.filter((d) => d['kind'] === kind) as T[];

function argValue(args: string[] | undefined, flag: string): string | undefined {
  const i = (args ?? []).indexOf(flag);
  return i === -1 ? undefined : args?.[i + 1];
}

/** The number a probe or Service names, resolved through the container's named ports. */
function portNumber(c: V1Container, port: number | string | undefined): number | undefined {
  if (typeof port === 'number') return port;
  return c.ports?.find((p) => p.name === port)?.containerPort;
}

function probePath(p: V1Probe | undefined): string | undefined {
  return p?.httpGet?.path;
}

t.test('the expected manifests are there', async (t) => {
  t.same(
    manifests.map((m) => m.file),
    ['sidecar.yaml', 'supervised.yaml'],
  );
});

t.test('the schemas reject what the API server would reject', async (t) => {
  const deployment = (container: Record<string, unknown>): Record<string, unknown> => ({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'x' },
    spec: {
      selector: { matchLabels: { app: 'x' } },
      template: { metadata: { labels: { app: 'x' } }, spec: { containers: [container] } },
    },
  });
  const good = { name: 'c', image: 'i', ports: [{ containerPort: 8080 }], restartPolicy: 'Always' };
  t.same(schemaErrors(deployment(good)), [], 'a minimal valid Deployment passes');

  const typo = schemaErrors(deployment({ name: 'c', image: 'i', restartPolcy: 'Always' }));
  t.ok(
    typo.some((e) => e.keyword === 'additionalProperties' && e.params['additionalProperty'] === 'restartPolcy'),
    `a misspelled field fails: ${show(typo)}`,
  );
  const nested = schemaErrors(deployment({ name: 'c', readinessProbe: { httpGet: { pth: '/-/ready', port: 8080 } } }));
  t.ok(
    nested.some((e) => e.params['additionalProperty'] === 'pth'),
    `a misspelled field deep down fails too: ${show(nested)}`,
  );
  const wrongType = schemaErrors(deployment({ name: 'c', ports: [{ containerPort: 'http' }] }));
  t.ok(
    wrongType.some((e) => e.keyword === 'type' && e.instancePath.endsWith('/ports/0/containerPort')),
    `a wrong type fails: ${show(wrongType)}`,
  );
  const missing = schemaErrors(deployment({ image: 'i' }));
  t.ok(
    missing.some((e) => e.keyword === 'required' && e.params['missingProperty'] === 'name'),
    `a missing required field fails: ${show(missing)}`,
  );
  t.throws(() => validatorFor('apps/v1', 'Deploymnet'), /no schema/, 'an unknown kind is an error, not a pass');
});

for (const m of manifests) {
  t.test(`${m.file}: every document matches its Kubernetes schema`, async (t) => {
    t.ok(m.docs.length > 0);
    for (const [i, doc] of m.docs.entries()) {
      const errors = schemaErrors(doc);
      t.same(errors, [], `document ${i} (${String(doc['kind'])}): ${show(errors)}`);
    }
  });
}

function checkPod(t: TapTest, pod: V1PodSpec): void {
  t.ok((pod.terminationGracePeriodSeconds ?? 30) >= MIN_GRACE_SECONDS, 'terminationGracePeriodSeconds covers drain + child stop');
  t.equal(pod.enableServiceLinks, false, 'no Service env vars that could collide with LLAMA_STATUS_PROXY_*');
  t.equal(pod.securityContext?.runAsNonRoot, true, 'runAsNonRoot');
  for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
    t.equal(c.securityContext?.readOnlyRootFilesystem, true, `${c.name}: read-only root`);
    t.equal(c.securityContext?.allowPrivilegeEscalation, false, `${c.name}: no privilege escalation`);
    t.ok(c.securityContext?.capabilities?.drop?.includes('ALL'), `${c.name}: drops ALL capabilities`);
    t.ok(c.resources?.requests !== undefined && c.resources.limits?.['memory'] !== undefined, `${c.name}: resources`);
  }
}

function checkProxyProbes(t: TapTest, proxy: V1Container, port: number): void {
  t.equal(probePath(proxy.startupProbe), '/-/live', 'startup probe on /-/live');
  t.equal(probePath(proxy.livenessProbe), '/-/live', 'liveness on /-/live, never the upstream');
  t.equal(probePath(proxy.readinessProbe), '/-/ready', 'readiness on /-/ready');
  for (const probe of [proxy.startupProbe, proxy.livenessProbe, proxy.readinessProbe]) {
    t.equal(portNumber(proxy, probe?.httpGet?.port), port, 'probe targets the proxy port');
  }
}

function checkService(t: TapTest, m: Manifest, deployment: V1Deployment, proxy: V1Container, port: number): void {
  const services = byKind<V1Service>(m, 'Service');
  t.equal(services.length, 1, 'one Service');
  const svc = services[0];
  if (svc === undefined) return;
  const labels = deployment.spec?.template.metadata?.labels ?? {};
  for (const [k, v] of Object.entries(svc.spec?.selector ?? {})) t.equal(labels[k], v, `Service selects the pods (${k})`);
  for (const p of svc.spec?.ports ?? []) {
    t.equal(portNumber(proxy, p.targetPort ?? p.port), port, `Service port ${p.port} targets the proxy, not llama-server`);
  }
}

for (const m of manifests) {
  t.test(`${m.file}: the deployment facts hold`, async (t) => {
    const deployments = byKind<V1Deployment>(m, 'Deployment');
    t.equal(deployments.length, 1, 'one Deployment');
    const deployment = deployments[0];
    const pod = deployment?.spec?.template.spec;
    if (deployment === undefined || pod === undefined) return;
    checkPod(t, pod);

    const sidecar = pod.initContainers?.find((c) => c.name === PROXY);
    const proxy = sidecar ?? pod.containers.find((c) => c.name === PROXY);
    if (proxy === undefined) {
      t.fail(`no container named ${PROXY}`);
      return;
    }
    // In supervised mode the only --port is llama-server's, which the proxy takes for itself.
    const port = Number(argValue(proxy.args, '--port'));
    t.equal(portNumber(proxy, 'http'), port, 'the port named http is the one the proxy listens on');
    checkProxyProbes(t, proxy, port);
    checkService(t, m, deployment, proxy, port);

    if (sidecar !== undefined) {
      t.equal(sidecar.restartPolicy, 'Always', 'the proxy is a native sidecar');
      const llama = pod.containers.find((c) => c.name === 'llama-server');
      if (llama === undefined) {
        t.fail('no llama-server container');
        return;
      }
      const llamaPort = Number(argValue(llama.args, '--port'));
      t.equal(portNumber(llama, 'llama'), llamaPort, 'llama-server listens on its declared port');
      t.equal(argValue(sidecar.args, '--upstream'), `http://127.0.0.1:${llamaPort}`, 'the proxy points at llama-server');
      t.equal(probePath(llama.startupProbe), '/health', 'llama-server startup probe on /health');
      t.equal(llama.startupProbe?.periodSeconds, 10);
      t.equal(llama.startupProbe?.failureThreshold, 60, '10 minutes to load a model');
      const preStop = llama.lifecycle?.preStop?.sleep?.seconds;
      t.ok(preStop !== undefined && preStop > 0 && preStop <= 10, 'a short preStop sleep on llama-server');
      checkModelMount(t, llama);
    } else {
      t.equal(pod.containers.length, 1, 'supervised: one container');
      const args = proxy.args ?? [];
      t.ok(args.indexOf('--exit-on-crash-loop') < args.indexOf('--'), 'exits on a crash loop so the kubelet restarts it');
      checkModelMount(t, proxy);
    }
  });
}

function checkModelMount(t: TapTest, c: V1Container): void {
  const model = argValue(c.args, '-m') ?? '';
  const mount = c.volumeMounts?.find((v) => model.startsWith(`${v.mountPath}/`));
  t.ok(mount?.readOnly, `the model ${model} is on a read-only mount`);
}
