import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseAllDocuments } from 'yaml';

/** A Kubernetes object as read from YAML; only the fields the checks read are typed. */
export interface K8sObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: {
    readonly name: string;
    readonly namespace?: string;
    readonly labels?: Readonly<Record<string, string>>;
    readonly annotations?: Readonly<Record<string, string>>;
  };
  readonly [field: string]: unknown;
}

/** A rendered object and the file it came from. */
export interface Rendered {
  readonly object: K8sObject;
  /** relative to the kustomization directory that was rendered */
  readonly file: string;
}

/** Every YAML document of a file, parsed strictly (errors and duplicate keys throw). */
export function parseYamlDocuments(text: string, file = '<text>'): unknown[] {
  return parseAllDocuments(text, { uniqueKeys: true, prettyErrors: true })
    .map((document) => {
      if (document.errors.length > 0) throw new Error(`${file}: ${document.errors.map((e) => e.message).join('; ')}`);
      return document.toJS() as unknown;
    })
    .filter((value) => value !== null && value !== undefined);
}

/**
 * Renders a kustomization the way `kustomize build` does for the subset used here: the
 * `resources` list (YAML files, or directories with their own kustomization.yaml), and
 * `patches` given by `path`: strategic merge patches of a rendered object named by the patch's
 * kind and name (`mergePatch`). Any other field throws, so a kustomization cannot silently
 * outgrow this renderer.
 * Object ids (kind, namespace, name) must be unique, as kustomize requires.
 */
export function renderKustomization(dir: string): Rendered[] {
  const rendered = renderDir(dir, dir);
  const ids = new Map<string, string>();
  for (const { object, file } of rendered) {
    const id = `${object.kind}/${object.metadata.namespace ?? ''}/${object.metadata.name}`;
    const previous = ids.get(id);
    if (previous) throw new Error(`${id} is defined twice: in ${previous} and ${file}`);
    ids.set(id, file);
  }
  return rendered;
}

const SUPPORTED = new Set(['apiVersion', 'kind', 'resources', 'patches']);

function renderDir(dir: string, root: string): Rendered[] {
  const file = ['kustomization.yaml', 'kustomization.yml', 'Kustomization'].map((name) => join(dir, name)).find(existsSync);
  if (!file) throw new Error(`${dir}: no kustomization.yaml`);
  const [kustomization] = parseYamlDocuments(readFileSync(file, 'utf8'), file) as [Record<string, unknown>];
  for (const field of Object.keys(kustomization)) {
    if (!SUPPORTED.has(field)) throw new Error(`${file}: "${field}" is not supported by renderKustomization`);
  }
  if (kustomization['kind'] !== 'Kustomization') throw new Error(`${file}: kind must be Kustomization`);
  const resources = kustomization['resources'];
  if (!Array.isArray(resources)) throw new Error(`${file}: resources must be a list`);
  const rendered = resources.flatMap((entry: unknown): Rendered[] => {
    if (typeof entry !== 'string') throw new Error(`${file}: a resource must be a path`);
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) return renderDir(path, root);
    return parseYamlDocuments(readFileSync(path, 'utf8'), path).map((object) => {
      assertObject(object, path);
      return { object, file: relative(root, path) };
    });
  });
  const patches = kustomization['patches'] ?? [];
  if (!Array.isArray(patches)) throw new Error(`${file}: patches must be a list`);
  for (const entry of patches as unknown[]) {
    const fields = typeof entry === 'object' && entry !== null ? Object.keys(entry) : [];
    const path = (entry as { path?: unknown }).path;
    if (typeof path !== 'string' || fields.length !== 1) throw new Error(`${file}: a patch must be { path } alone`);
    for (const patch of parseYamlDocuments(readFileSync(join(dir, path), 'utf8'), path)) {
      assertObject(patch, path);
      const index = rendered.findIndex(({ object }) => object.kind === patch.kind && object.metadata.name === patch.metadata.name);
      if (index < 0) throw new Error(`${path}: no ${patch.kind}/${patch.metadata.name} to patch`);
      rendered[index] = { object: mergePatch(rendered[index]!.object, patch) as K8sObject, file: rendered[index]!.file };
    }
  }
  return rendered;
}

/**
 * A strategic merge patch, for the fields these manifests patch: maps merge key by key, `null`
 * deletes a key, lists of maps with a `name` (containers, env, volumes, volumeMounts, ports)
 * merge by name (new names first, as kustomize puts them), any other list is replaced.
 */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (Array.isArray(patch)) {
    const named = (items: unknown[]) => items.every((item) => typeof (item as { name?: unknown } | null)?.name === 'string');
    if (!Array.isArray(target) || !named(target) || !named(patch)) return patch;
    // as kustomize orders them: the patch's new items first, then the target's, merged in place
    const patchItems = patch as { name: string }[];
    const added = patchItems.filter((item) => !(target as { name: string }[]).some((existing) => existing.name === item.name));
    const kept = (target as { name: string }[]).map((existing) => {
      const item = patchItems.find((candidate) => candidate.name === existing.name);
      return item ? (mergePatch(existing, item) as { name: string }) : existing;
    });
    return [...added, ...kept];
  }
  if (typeof patch !== 'object' || patch === null || typeof target !== 'object' || target === null || Array.isArray(target)) {
    return patch;
  }
  const merged: Record<string, unknown> = { ...(target as Record<string, unknown>) };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete merged[key];
    else merged[key] = key in merged ? mergePatch(merged[key], value) : value;
  }
  return merged;
}

function assertObject(value: unknown, file: string): asserts value is K8sObject {
  const object = value as Partial<K8sObject> | null;
  if (
    typeof object !== 'object' ||
    object === null ||
    typeof object.apiVersion !== 'string' ||
    typeof object.kind !== 'string' ||
    typeof object.metadata?.name !== 'string'
  ) {
    throw new Error(`${file}: every document needs apiVersion, kind and metadata.name`);
  }
}

// The parts of workloads the checks read.

export interface EnvVar {
  readonly name: string;
  readonly value?: string;
  readonly valueFrom?: {
    readonly fieldRef?: { readonly fieldPath: string };
    readonly secretKeyRef?: { readonly name: string; readonly key: string };
    readonly configMapKeyRef?: { readonly name: string; readonly key: string };
  };
}

export interface Probe {
  readonly grpc?: { readonly port: number; readonly service?: string };
  readonly httpGet?: { readonly port: number | string; readonly path: string };
  readonly tcpSocket?: { readonly port: number | string };
  readonly exec?: { readonly command: readonly string[] };
  readonly periodSeconds?: number;
  readonly timeoutSeconds?: number;
  readonly failureThreshold?: number;
}

export interface Container {
  readonly name: string;
  readonly image: string;
  readonly ports?: readonly { readonly name?: string; readonly containerPort: number }[];
  readonly env?: readonly EnvVar[];
  readonly envFrom?: readonly {
    readonly configMapRef?: { readonly name: string };
    readonly secretRef?: { readonly name: string };
  }[];
  readonly startupProbe?: Probe;
  readonly livenessProbe?: Probe;
  readonly readinessProbe?: Probe;
  readonly resources?: {
    readonly requests?: Readonly<Record<string, string>>;
    readonly limits?: Readonly<Record<string, string>>;
  };
  readonly securityContext?: Readonly<Record<string, unknown>>;
  readonly volumeMounts?: readonly { readonly name: string; readonly mountPath: string; readonly readOnly?: boolean }[];
}

export interface PodSpec {
  readonly containers: readonly Container[];
  readonly securityContext?: Readonly<Record<string, unknown>>;
  readonly volumes?: readonly {
    readonly name: string;
    readonly configMap?: { readonly name: string };
    readonly secret?: { readonly secretName: string; readonly defaultMode?: number };
    readonly emptyDir?: object;
  }[];
  readonly [field: string]: unknown;
}

export interface Deployment extends K8sObject {
  readonly spec: {
    readonly replicas: number;
    readonly selector: { readonly matchLabels: Readonly<Record<string, string>> };
    readonly template: {
      readonly metadata: { readonly labels: Readonly<Record<string, string>> };
      readonly spec: PodSpec;
    };
  };
}

export interface Service extends K8sObject {
  readonly spec: {
    readonly selector: Readonly<Record<string, string>>;
    readonly ports: readonly { readonly name?: string; readonly port: number; readonly targetPort?: number | string }[];
  };
}

export interface PodDisruptionBudget extends K8sObject {
  readonly spec: {
    readonly selector: { readonly matchLabels: Readonly<Record<string, string>> };
    readonly minAvailable?: number | string;
    readonly maxUnavailable?: number | string;
  };
}

export interface ConfigMap extends K8sObject {
  readonly data?: Readonly<Record<string, string>>;
}

export interface Secret extends K8sObject {
  readonly data?: Readonly<Record<string, string>>;
  readonly stringData?: Readonly<Record<string, string>>;
}

/** A NetworkPolicy's peer: pods by label, in the policy's namespace or in the namespaces selected. */
export interface NetworkPolicyPeer {
  readonly podSelector?: { readonly matchLabels?: Readonly<Record<string, string>> };
  readonly namespaceSelector?: { readonly matchLabels?: Readonly<Record<string, string>> };
  readonly ipBlock?: { readonly cidr: string };
}

export interface NetworkPolicyPort {
  readonly protocol?: string;
  readonly port?: number | string;
}

export interface NetworkPolicyRule {
  readonly from?: readonly NetworkPolicyPeer[];
  readonly to?: readonly NetworkPolicyPeer[];
  readonly ports?: readonly NetworkPolicyPort[];
}

export interface NetworkPolicy extends K8sObject {
  readonly spec: {
    readonly podSelector: { readonly matchLabels?: Readonly<Record<string, string>> };
    readonly policyTypes: readonly ('Ingress' | 'Egress')[];
    readonly ingress?: readonly NetworkPolicyRule[];
    readonly egress?: readonly NetworkPolicyRule[];
  };
}

/** The other end of a connection: a pod's labels, and its namespace's (omitted: the policy's own). */
export interface PolicyEndpoint {
  readonly labels: Readonly<Record<string, string>>;
  readonly namespaceLabels?: Readonly<Record<string, string>>;
}

/**
 * Whether `policy` lets a connection through in `direction` with `endpoint` at the other end, to
 * `port` (a number; named ports in the rules are resolved with `portNamed`, against the pod that
 * listens). Only what this policy says: as Kubernetes does, a pod no policy of that direction
 * selects is open, and several policies add up. ipBlock peers match no pod.
 */
export function policyAllows(
  policy: NetworkPolicy,
  direction: 'ingress' | 'egress',
  endpoint: PolicyEndpoint,
  port: number,
  protocol = 'TCP',
  portNamed: (name: string) => number | undefined = () => undefined,
): boolean {
  const rules = policy.spec[direction] ?? [];
  return rules.some((rule) => {
    const peers = direction === 'ingress' ? rule.from : rule.to;
    const peerOk = peers === undefined || peers.some((peer) => peerMatches(peer, endpoint));
    const portOk =
      rule.ports === undefined ||
      rule.ports.some(
        (item) =>
          (item.protocol ?? 'TCP') === protocol &&
          (item.port === undefined || (typeof item.port === 'number' ? item.port : portNamed(item.port)) === port),
      );
    return peerOk && portOk;
  });
}

function peerMatches(peer: NetworkPolicyPeer, endpoint: PolicyEndpoint): boolean {
  if (peer.ipBlock) return false;
  const labelsMatch = (selector: Readonly<Record<string, string>> | undefined, labels: Readonly<Record<string, string>>) =>
    Object.entries(selector ?? {}).every(([key, value]) => labels[key] === value);
  const podOk = peer.podSelector === undefined || labelsMatch(peer.podSelector.matchLabels, endpoint.labels);
  const namespaceOk =
    peer.namespaceSelector === undefined
      ? endpoint.namespaceLabels === undefined
      : labelsMatch(peer.namespaceSelector.matchLabels, endpoint.namespaceLabels ?? {});
  return podOk && namespaceOk;
}

export function ofKind<T extends K8sObject>(objects: readonly K8sObject[], kind: string): T[] {
  return objects.filter((object) => object.kind === kind) as T[];
}

/** Whether every label of `selector` is on `labels`. */
export function selects(selector: Readonly<Record<string, string>>, labels: Readonly<Record<string, string>>): boolean {
  const entries = Object.entries(selector);
  return entries.length > 0 && entries.every(([key, value]) => labels[key] === value);
}

/** Values a container's env takes from the downward API, for resolving fieldRefs. */
export interface PodFacts {
  readonly podIP: string;
  readonly labels: Readonly<Record<string, string>>;
}

/**
 * The environment a container starts with: envFrom (ConfigMaps, Secrets) in order, then env,
 * which wins. References to objects missing from `objects` throw, as the kubelet would refuse
 * to start the container.
 */
export function containerEnv(container: Container, objects: readonly K8sObject[], pod: PodFacts): Map<string, string> {
  const env = new Map<string, string>();
  const configMap = (name: string) => {
    const found = ofKind<ConfigMap>(objects, 'ConfigMap').find((object) => object.metadata.name === name);
    if (!found) throw new Error(`container ${container.name}: no ConfigMap ${name}`);
    return found.data ?? {};
  };
  const secret = (name: string) => {
    const found = ofKind<Secret>(objects, 'Secret').find((object) => object.metadata.name === name);
    if (!found) throw new Error(`container ${container.name}: no Secret ${name}`);
    return secretData(found);
  };
  for (const source of container.envFrom ?? []) {
    const data = source.configMapRef ? configMap(source.configMapRef.name) : source.secretRef ? secret(source.secretRef.name) : {};
    for (const [key, value] of Object.entries(data)) env.set(key, value);
  }
  for (const variable of container.env ?? []) {
    const from = variable.valueFrom;
    if (variable.value !== undefined) env.set(variable.name, variable.value);
    else if (from?.fieldRef) env.set(variable.name, fieldValue(from.fieldRef.fieldPath, pod));
    else if (from?.configMapKeyRef) env.set(variable.name, required(configMap(from.configMapKeyRef.name), from.configMapKeyRef.key));
    else if (from?.secretKeyRef) env.set(variable.name, required(secret(from.secretKeyRef.name), from.secretKeyRef.key));
    else env.set(variable.name, '');
  }
  return env;
}

/** A Secret's values: `data` is base64, `stringData` plain and wins. */
export function secretData(secret: Secret): Record<string, string> {
  const decoded = Object.fromEntries(
    Object.entries(secret.data ?? {}).map(([key, value]) => [key, Buffer.from(value, 'base64').toString('utf8')]),
  );
  return { ...decoded, ...secret.stringData };
}

function fieldValue(path: string, pod: PodFacts): string {
  if (path === 'status.podIP') return pod.podIP;
  const label = /^metadata\.labels\['([^']+)'\]$/.exec(path);
  if (label) {
    const value = pod.labels[label[1]!];
    if (value === undefined) throw new Error(`fieldRef ${path}: the pod has no such label`);
    return value;
  }
  throw new Error(`fieldRef ${path} is not resolved by these checks`);
}

function required(data: Readonly<Record<string, string>>, key: string): string {
  const value = data[key];
  if (value === undefined) throw new Error(`no key ${key}`);
  return value;
}
