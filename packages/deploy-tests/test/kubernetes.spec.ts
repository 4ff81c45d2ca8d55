// deploy/kubernetes: every variant rendered from its kustomization (and by kubectl when it is
// installed), then the wiring: labels and selectors, ports and probes, the cluster variables,
// configuration and secrets, security settings, and each COS container's environment loaded
// by the real configuration library.
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import {
  containerEnv,
  isAllowedVariable,
  looksSecret,
  ofKind,
  parseYamlDocuments,
  policyAllows,
  renderKustomization,
  secretData,
  selects,
  workloadOfImage,
  type ConfigMap,
  type Container,
  type Deployment,
  type K8sObject,
  type NetworkPolicy,
  type PodDisruptionBudget,
  type PolicyEndpoint,
  type Probe,
  type Secret,
  type Service,
} from '../src/index.js';
import { loadCosConfig } from './support/cos-config.js';
import { COS_METRICS_PORT, COS_PORT, IMAGES, imageName, readRepoFile, repoPath } from './support/repo.js';
import { parseCompose } from '../src/compose.js';
// eslint-disable-next-line @nx/enforce-module-boundaries -- docker/ is no workspace project
import { parseArguments } from '../../../docker/healthcheck.mjs';

const run = promisify(execFile);
const KUBERNETES = repoPath('deploy/kubernetes');

/** Each variant, and the variants it expects to be applied first (whose objects it uses). */
const VARIANTS: Record<string, readonly string[]> = { standalone: [], readside: ['standalone'], sidecar: [], tls: [] };

const temporary: string[] = [];
afterAll(() => {
  for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
});

function render(variant: string): K8sObject[] {
  return renderKustomization(join(KUBERNETES, variant)).map((item) => item.object);
}

/** What a variant's pods see: its own objects and those of the variants applied before it. */
function cluster(variant: string): K8sObject[] {
  return [...VARIANTS[variant]!.flatMap(render), ...render(variant)];
}

const isCos = (container: Container) => workloadOfImage(container.image) === 'cos';

/** The pod labels the NetworkPolicies let in: the application's pods, and operators' tooling. */
const CLIENT_LABEL = 'chief-of-state/client';
const ADMIN_LABEL = 'chief-of-state/admin';
/** The label Kubernetes puts on every namespace (1.21+), the one namespace selectors use. */
const NAMESPACE_NAME = 'kubernetes.io/metadata.name';

/**
 * The handlers a COS container calls across the network, as pod labels and the port their pods
 * listen on (a Service's target port: policies see the pod's port), from its configuration: a
 * Service of these manifests, or the user's (labelled `app: <host>` by convention). A sidecar's
 * handler on loopback needs no rule.
 */
function handlerTargets(container: Container, config: ReturnType<typeof loadCosConfig>['config'], objects: readonly K8sObject[]) {
  const targets =
    imageName(container.image) === 'chiefofstate/cos-readside'
      ? config.readSide.readSides.map((side) => ({ host: side.host, port: side.port }))
      : [{ host: config.writeSide.host, port: config.writeSide.port }];
  return targets
    .filter(({ host }) => host !== '127.0.0.1' && host !== 'localhost')
    .map(({ host, port }) => {
      const service = ofKind<Service>(objects, 'Service').find((item) => item.metadata.name === host);
      if (!service) return { host: { name: host, labels: { app: host }, containerPort: undefined }, port };
      const target = service.spec.ports.find((item) => item.port === port)?.targetPort ?? port;
      const pods = ofKind<Deployment>(objects, 'Deployment').find((item) => selects(service.spec.selector, item.spec.template.metadata.labels))!;
      const containerPort = pods.spec.template.spec.containers.map((item) => portOf(item, target)).find((value) => value !== undefined);
      return { host: { name: host, labels: service.spec.selector, containerPort }, port };
    });
}

function portOf(container: Container, port: number | string): number | undefined {
  if (typeof port === 'number') return container.ports?.some((item) => item.containerPort === port) ? port : undefined;
  return container.ports?.find((item) => item.name === port)?.containerPort;
}

function probesOf(container: Container): [string, Probe][] {
  return (['startupProbe', 'livenessProbe', 'readinessProbe'] as const)
    .filter((kind) => container[kind] !== undefined)
    .map((kind) => [kind, container[kind]!]);
}

/**
 * A COS container's configuration as the process would load it: env resolved against the
 * cluster's ConfigMaps and Secrets and the pod's downward API, ConfigMap volumes written to a
 * temporary directory (their mount paths in the env mapped there).
 */
function cosConfig(deployment: Deployment, container: Container, objects: readonly K8sObject[]) {
  const env = containerEnv(container, objects, { podIP: '10.1.2.3', labels: deployment.spec.template.metadata.labels });
  const root = mkdtempSync(join(tmpdir(), 'cos-k8s-'));
  temporary.push(root);
  for (const mount of container.volumeMounts ?? []) {
    const volume = deployment.spec.template.spec.volumes?.find((item) => item.name === mount.name);
    const files = volume?.configMap ? configMapFiles(volume.configMap.name, objects) : volume?.secret ? secretFiles(volume.secret.secretName, objects) : undefined;
    if (!files) continue;
    const dir = join(root, mount.mountPath);
    mkdirSync(dir, { recursive: true });
    for (const [file, content] of Object.entries(files)) writeFileSync(join(dir, file), content);
    for (const [name, value] of env) if (value.startsWith(mount.mountPath)) env.set(name, join(root, value));
  }
  return { env, loaded: loadCosConfig(container.image, Object.fromEntries(env), root) };
}

function configMapFiles(name: string, objects: readonly K8sObject[]): Record<string, string> {
  const configMap = ofKind<ConfigMap>(objects, 'ConfigMap').find((item) => item.metadata.name === name);
  expect(configMap, `ConfigMap ${name}`).toBeDefined();
  return { ...configMap!.data };
}

/**
 * A Secret volume's files: the Secret's own data when it is one of these objects; what
 * cert-manager writes (tls.crt, tls.key, ca.crt) for a Certificate's Secret, or for a CA the
 * user creates, a throwaway self-signed certificate.
 */
function secretFiles(name: string, objects: readonly K8sObject[]): Record<string, string> {
  const secret = ofKind<Secret>(objects, 'Secret').find((item) => item.metadata.name === name);
  if (secret) return secretData(secret);
  const { cert, key } = throwawayCertificate();
  return { 'tls.crt': cert, 'tls.key': key, 'ca.crt': cert };
}

let throwaway: { cert: string; key: string } | undefined;
function throwawayCertificate(): { cert: string; key: string } {
  if (throwaway) return throwaway;
  const dir = mkdtempSync(join(tmpdir(), 'cos-k8s-pki-'));
  temporary.push(dir);
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=chief-of-state', '-addext', 'subjectAltName=DNS:chief-of-state',
    '-keyout', join(dir, 'tls.key'), '-out', join(dir, 'tls.crt'),
  ], { stdio: 'ignore' });
  throwaway = { cert: readFileSync(join(dir, 'tls.crt'), 'utf8'), key: readFileSync(join(dir, 'tls.key'), 'utf8') };
  return throwaway;
}

describe.each(Object.keys(VARIANTS))('deploy/kubernetes/%s', (variant) => {
  const objects = render(variant);
  const all = cluster(variant);
  const deployments = ofKind<Deployment>(objects, 'Deployment');
  const cosDeployments = deployments.filter((item) => item.spec.template.spec.containers.some(isCos));

  it('renders to known kinds of the stable APIs, with no RBAC, namespace or cluster-wide objects', () => {
    const apiVersions: Record<string, string> = {
      ConfigMap: 'v1',
      Secret: 'v1',
      Service: 'v1',
      Deployment: 'apps/v1',
      PodDisruptionBudget: 'policy/v1',
      NetworkPolicy: 'networking.k8s.io/v1',
      Certificate: 'cert-manager.io/v1',
      Issuer: 'cert-manager.io/v1',
    };
    for (const object of objects) {
      expect(apiVersions[object.kind], `${object.kind}/${object.metadata.name}`).toBe(object.apiVersion);
      expect(object.metadata.namespace, 'namespace is left to kubectl -n or an overlay').toBeUndefined();
    }
    expect(cosDeployments.length).toBeGreaterThan(0);
  });

  it('renders as kubectl kustomize does', async (context) => {
    const kubectl = await run('kubectl', ['kustomize', join(KUBERNETES, variant)]).catch(() => undefined);
    if (!kubectl) context.skip('kubectl is not installed');
    // kubectl sorts keys and objects its own way; compare as data
    const normalise = (items: unknown[]) => items.map((item) => JSON.stringify(sortKeys(item))).sort();
    expect(normalise(parseYamlDocuments(kubectl!.stdout))).toEqual(normalise(objects));
  });

  it('has each Deployment select its own pods, with a PodDisruptionBudget and a Service for it', () => {
    for (const deployment of deployments) {
      const { selector, template } = deployment.spec;
      expect(selects(selector.matchLabels, template.metadata.labels), deployment.metadata.name).toBe(true);
      // no other Deployment's pods match
      for (const other of deployments.filter((item) => item !== deployment)) {
        expect(selects(selector.matchLabels, other.spec.template.metadata.labels)).toBe(false);
      }
      const budgets = ofKind<PodDisruptionBudget>(objects, 'PodDisruptionBudget').filter((pdb) =>
        selects(pdb.spec.selector.matchLabels, template.metadata.labels),
      );
      const services = ofKind<Service>(objects, 'Service').filter((service) => selects(service.spec.selector, template.metadata.labels));
      expect(services.length, `a Service for ${deployment.metadata.name}`).toBe(1);
      if (deployment.spec.template.spec.containers.some(isCos)) {
        expect(budgets.length, `a PodDisruptionBudget for ${deployment.metadata.name}`).toBe(1);
      }
      for (const pdb of budgets) {
        expect(pdb.spec.selector.matchLabels).toEqual(selector.matchLabels);
        // a budget that allows no disruption would block node drains
        const allowed =
          pdb.spec.maxUnavailable !== undefined
            ? Number(pdb.spec.maxUnavailable)
            : deployment.spec.replicas - Number(pdb.spec.minAvailable);
        expect(allowed, pdb.metadata.name).toBeGreaterThanOrEqual(1);
      }
    }
    for (const pdb of ofKind<PodDisruptionBudget>(objects, 'PodDisruptionBudget')) {
      expect(deployments.some((item) => selects(pdb.spec.selector.matchLabels, item.spec.template.metadata.labels)), pdb.metadata.name).toBe(true);
    }
  });

  it('routes every Service port to a named container port of the selected pods', () => {
    for (const service of ofKind<Service>(objects, 'Service')) {
      const pods = deployments.filter((item) => selects(service.spec.selector, item.spec.template.metadata.labels));
      expect(pods.length, service.metadata.name).toBe(1);
      const containers = pods[0]!.spec.template.spec.containers;
      for (const port of service.spec.ports) {
        const target = port.targetPort ?? port.port;
        expect(typeof target, 'target ports by name').toBe('string');
        const resolved = containers.map((container) => portOf(container, target)).filter((value) => value !== undefined);
        expect(resolved, `${service.metadata.name}:${port.name}`).toEqual([port.port]);
      }
      const annotations = service.metadata.annotations ?? {};
      if (annotations['prometheus.io/scrape'] === 'true') {
        const metrics = service.spec.ports.find((port) => port.name === 'metrics');
        expect(Number(annotations['prometheus.io/port'])).toBe(metrics?.port);
        expect(annotations['prometheus.io/path']).toBe('/metrics');
      }
    }
  });

  it('keeps secrets in Secrets: no secret-looking key in a ConfigMap, no literal secret in a container', () => {
    for (const configMap of ofKind<ConfigMap>(objects, 'ConfigMap')) {
      for (const key of Object.keys(configMap.data ?? {})) expect(looksSecret(key), `${configMap.metadata.name}: ${key}`).toBe(false);
      for (const value of Object.values(configMap.data ?? {})) expect(value).not.toMatch(/password|secret/i);
    }
    for (const deployment of deployments) {
      for (const container of deployment.spec.template.spec.containers) {
        for (const variable of container.env ?? []) {
          if (!looksSecret(variable.name)) continue;
          expect(variable.value, `${container.name}: ${variable.name}`).toBeUndefined();
          expect(variable.valueFrom?.secretKeyRef, `${container.name}: ${variable.name}`).toBeDefined();
        }
        // the secret values a COS container gets come from a Secret
        if (isCos(container)) {
          const fromSecrets = (container.envFrom ?? []).filter((source) => source.secretRef).map((source) => source.secretRef!.name);
          const secretKeys = new Set(
            ofKind<Secret>(all, 'Secret')
              .filter((secret) => fromSecrets.includes(secret.metadata.name))
              .flatMap((secret) => [...Object.keys(secret.data ?? {}), ...Object.keys(secret.stringData ?? {})]),
          );
          expect(secretKeys, container.name).toContain('COS_POSTGRES_PASSWORD');
        }
      }
    }
    for (const secret of ofKind<Secret>(objects, 'Secret')) {
      expect(secret.type).toBe('Opaque');
      for (const key of [...Object.keys(secret.data ?? {}), ...Object.keys(secret.stringData ?? {})]) {
        expect(looksSecret(key), `${secret.metadata.name} holds ${key}, which is not secret`).toBe(true);
      }
    }
  });

  it('runs every container without root, privilege escalation or capabilities, on a read-only root filesystem', () => {
    for (const deployment of deployments) {
      const pod = deployment.spec.template.spec;
      expect(pod.securityContext).toMatchObject({
        runAsNonRoot: true,
        runAsUser: 1000, // the node user of the images (USER node): numeric so the kubelet can verify it
        runAsGroup: 1000,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(pod['automountServiceAccountToken']).toBe(false);
      expect(pod['enableServiceLinks']).toBe(false);
      for (const container of pod.containers) {
        expect(container.securityContext, container.name).toEqual({
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ['ALL'] },
        });
        expect(container.resources?.requests, container.name).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
        expect(container.resources?.limits, container.name).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
        expect(mebibytes(container.resources!.limits!['memory']!)).toBeGreaterThanOrEqual(mebibytes(container.resources!.requests!['memory']!));
      }
    }
  });

  it('uses the images docker/ builds, at the tag the compose file uses', () => {
    const composeImages = new Set(Object.values(parseCompose(readRepoFile('docker/compose.yaml')).services).map((item) => item.image));
    for (const deployment of deployments) {
      for (const container of deployment.spec.template.spec.containers) {
        const spec = IMAGES.find((image) => image.image === imageName(container.image));
        expect(spec, container.image).toBeDefined();
        expect(composeImages, container.image).toContain(container.image);
        expect(container['imagePullPolicy' as keyof Container]).toBe('IfNotPresent');
      }
    }
  });

  describe.each(cosDeployments.map((deployment) => [deployment.metadata.name, deployment] as const))('Deployment %s', (_name, deployment) => {
    const pod = deployment.spec.template;
    const cos = pod.spec.containers.filter(isCos);

    it.each(cos.map((container) => [container.name, container] as const))('container %s loads its configuration without a warning', (_container, container) => {
      const { loaded } = cosConfig(deployment, container, all);
      expect(loaded.warnings).toEqual([]);
      // several replicas share one journal: PostgreSQL, never the embedded store
      expect(loaded.config.store.kind).toBe('postgres');
    });

    it.each(cos.map((container) => [container.name, container] as const))(
      'container %s is wired as the configuration says for Kubernetes',
      (_container, container) => {
        const env = new Map((container.env ?? []).map((variable) => [variable.name, variable]));
        // POD_IP from the downward API
        expect(env.get('POD_IP')).toEqual({ name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } });
        // the app label: the pod's own label, one the Deployment selects its replicas by
        const labelPath = env.get('COS_KUBERNETES_APP_LABEL')?.valueFrom?.fieldRef?.fieldPath;
        const labelKey = /^metadata\.labels\['([^']+)'\]$/.exec(labelPath ?? '')?.[1];
        expect(labelKey, 'COS_KUBERNETES_APP_LABEL from a pod label').toBeDefined();
        expect(deployment.spec.selector.matchLabels[labelKey!]).toBe(pod.metadata.labels[labelKey!]);
        // the replica count is the Deployment's
        expect(env.get('COS_KUBERNETES_REPLICA_COUNT')?.value).toBe(String(deployment.spec.replicas));

        const { loaded } = cosConfig(deployment, container, all);
        expect(loaded.config.cluster).toEqual({
          mode: 'kubernetes',
          dockerServiceName: expect.any(String),
          replicaCount: deployment.spec.replicas,
          podIp: '10.1.2.3',
          kubernetesAppLabel: pod.metadata.labels[labelKey!],
          // no COS_CLUSTER_SECRET in the manifests: the replicas share one through the database
          secret: undefined,
          maxClockSkewMs: 30_000,
          // a killed replica's shards taken over as soon as PostgreSQL ends its session
          fastTakeover: true,
          // with a TLS listener, peers are dialled over TLS with its certificate
          peerTls: env.has('COS_TLS_CERT_FILE')
            ? expect.objectContaining({ certFile: expect.any(String), keyFile: expect.any(String), caFile: expect.any(String) })
            : undefined,
        });
      },
    );

    it.each(cos.map((container) => [container.name, container] as const))(
      'container %s exposes COS_PORT and COS_METRICS_PORT and is probed with gRPC health on COS_PORT (over HTTP on the metrics port with TLS)',
      (_container, container) => {
        const { config } = cosConfig(deployment, container, all).loaded;
        expect(config.server.port).toBe(COS_PORT);
        expect(config.telemetry.metricsPort).toBe(COS_METRICS_PORT);
        expect(portOf(container, 'grpc')).toBe(config.server.port);
        expect(portOf(container, 'metrics')).toBe(config.telemetry.metricsPort);
        const probes = Object.fromEntries(probesOf(container));
        expect(Object.keys(probes).sort()).toEqual(['livenessProbe', 'readinessProbe', 'startupProbe']);
        // kubelet's gRPC probes speak no TLS: a TLS listener is probed on the operations port
        const tls = containerEnv(container, all, { podIP: '10.1.2.3', labels: pod.metadata.labels }).has('COS_TLS_CERT_FILE');
        for (const [kind, probe] of Object.entries(probes)) {
          if (tls) {
            expect(probe.grpc, kind).toBeUndefined();
            expect(portOf(container, probe.httpGet!.port), kind).toBe(config.telemetry.metricsPort);
            expect(probe.httpGet!.path, kind).toBe(kind === 'readinessProbe' ? '/readyz' : '/healthz');
          } else {
            expect(probe.grpc, kind).toEqual({ port: config.server.port });
          }
          expect(probe.timeoutSeconds, kind).toBeLessThanOrEqual(probe.periodSeconds!);
        }
        // the startup probe leaves time for migrations: at least a minute
        expect(probes['startupProbe']!.periodSeconds! * probes['startupProbe']!.failureThreshold!).toBeGreaterThanOrEqual(60);
      },
    );

    it.each(cos.map((container) => [container.name, container] as const))(
      'container %s has only known variables and a writable /tmp',
      (_container, container) => {
        for (const name of cosConfig(deployment, container, all).env.keys()) {
          expect(isAllowedVariable('cos', name), name).toBe(true);
        }
        const tmp = container.volumeMounts?.find((mount) => mount.mountPath === '/tmp');
        expect(pod.spec.volumes?.find((volume) => volume.name === tmp?.name)?.emptyDir).toBeDefined();
      },
    );

    it('reaches its write handler (when it calls one) and its read sides where they listen', () => {
      for (const container of cos) {
        const { config } = cosConfig(deployment, container, all).loaded;
        const targets =
          imageName(container.image) === 'chiefofstate/cos-readside'
            ? config.readSide.readSides.map((side) => ({ host: side.host, port: side.port }))
            : [{ host: config.writeSide.host, port: config.writeSide.port }];
        for (const { host, port } of targets) {
          if (host === '127.0.0.1' || host === 'localhost') {
            // a sidecar: another container of the pod listens there, on loopback only
            const handler = pod.spec.containers.find((item) => item !== container && !isCos(item))!;
            const handlerEnv = containerEnv(handler, all, { podIP: '10.1.2.3', labels: pod.metadata.labels });
            expect(Number(handlerEnv.get('PORT'))).toBe(port);
            expect(handlerEnv.get('HOST')).toBe('127.0.0.1');
            continue;
          }
          const service = ofKind<Service>(all, 'Service').find((item) => item.metadata.name === host);
          if (!service) {
            // the example read side is the user's Service, not part of these manifests
            expect(host).toBe('sample-bank-readside');
            continue;
          }
          const servicePort = service.spec.ports.find((item) => item.port === port);
          expect(servicePort, `${host}:${port}`).toBeDefined();
          const handlerPod = ofKind<Deployment>(all, 'Deployment').find((item) => selects(service.spec.selector, item.spec.template.metadata.labels))!;
          const [handler] = handlerPod.spec.template.spec.containers;
          const handlerEnv = containerEnv(handler!, all, { podIP: '10.1.2.4', labels: handlerPod.spec.template.metadata.labels });
          expect(Number(handlerEnv.get('PORT'))).toBe(portOf(handler!, servicePort!.targetPort!));
        }
      }
    });

    it('leaves no replica short during a rollout', () => {
      expect(deployment.spec.replicas).toBeGreaterThanOrEqual(2);
      const strategy = (deployment.spec as unknown as { strategy?: { rollingUpdate?: { maxUnavailable?: number } } }).strategy;
      if (strategy) expect(strategy.rollingUpdate?.maxUnavailable).toBe(0);
    });
  });

  it('puts every pod behind one NetworkPolicy of closed rules: each names its peers and ports', () => {
    const policies = ofKind<NetworkPolicy>(objects, 'NetworkPolicy');
    for (const deployment of deployments) {
      const mine = policies.filter((policy) => selects(policy.spec.podSelector.matchLabels ?? {}, deployment.spec.template.metadata.labels));
      expect(mine.length, `a NetworkPolicy for ${deployment.metadata.name}`).toBe(1);
      const types = deployment.spec.template.spec.containers.some(isCos) ? ['Egress', 'Ingress'] : ['Ingress'];
      expect([...mine[0]!.spec.policyTypes].sort(), deployment.metadata.name).toEqual(types);
    }
    for (const policy of policies) {
      expect(deployments.some((item) => selects(policy.spec.podSelector.matchLabels ?? {}, item.spec.template.metadata.labels)), policy.metadata.name).toBe(true);
      for (const rule of [...(policy.spec.ingress ?? []), ...(policy.spec.egress ?? [])]) {
        // no rule open to everyone or on every port
        const peers = rule.from ?? rule.to ?? [];
        expect(peers.length, policy.metadata.name).toBeGreaterThan(0);
        expect(rule.ports?.length, policy.metadata.name).toBeGreaterThan(0);
        for (const peer of peers) {
          expect(peer.ipBlock, 'pods by label, not address ranges').toBeUndefined();
          expect(Object.keys(peer.podSelector?.matchLabels ?? {}).length, `${policy.metadata.name}: a pod selector naming pods`).toBeGreaterThan(0);
          if (peer.namespaceSelector) expect(Object.keys(peer.namespaceSelector.matchLabels ?? {})).toEqual([NAMESPACE_NAME]);
        }
      }
    }
  });

  describe.each(cosDeployments.map((deployment) => [deployment.metadata.name, deployment] as const))('NetworkPolicy of %s', (_name, deployment) => {
    const pod = deployment.spec.template;
    const container = pod.spec.containers.find(isCos)!;
    const policy = ofKind<NetworkPolicy>(objects, 'NetworkPolicy').find((item) =>
      selects(item.spec.podSelector.matchLabels ?? {}, pod.metadata.labels),
    )!;
    const { config } = cosConfig(deployment, container, all).loaded;
    const isServer = imageName(container.image) === 'chiefofstate/cos-server';
    const named = (name: string) => portOf(container, name);
    const inbound = (from: PolicyEndpoint, port: number) =>
      policyAllows(policy, 'ingress', from, port, 'TCP', named);
    const outbound = (to: PolicyEndpoint, port: number, protocol = 'TCP') =>
      policyAllows(policy, 'egress', to, port, protocol);
    const grpcPort = config.server.port;
    const metricsPort = config.telemetry.metricsPort;
    // cos-server serves the application; cos-readside only ReadSideManagerService, for operators
    const caller: PolicyEndpoint = { labels: { [isServer ? CLIENT_LABEL : ADMIN_LABEL]: 'true' } };
    const prometheus = { labels: { 'app.kubernetes.io/name': 'prometheus' }, namespaceLabels: { [NAMESPACE_NAME]: 'monitoring' } };
    const stranger = { labels: { app: 'something-else' } };

    it("lets the app's pods (or operators' for cos-readside) reach gRPC, Prometheus the metrics, nobody else either", () => {
      expect(inbound(caller, grpcPort)).toBe(true);
      expect(inbound(caller, metricsPort)).toBe(false);
      expect(inbound(prometheus, metricsPort)).toBe(true);
      expect(inbound(prometheus, grpcPort)).toBe(false);
      expect(inbound(stranger, grpcPort)).toBe(false);
      expect(inbound(stranger, metricsPort)).toBe(false);
      expect(inbound({ labels: { ...caller.labels }, namespaceLabels: { [NAMESPACE_NAME]: 'elsewhere' } }, grpcPort)).toBe(false);
      if (!isServer) expect(inbound({ labels: { [CLIENT_LABEL]: 'true' } }, grpcPort), 'an API client is no operator').toBe(false);
    });

    it('lets the replicas forward calls to each other on COS_PORT (cos-server)', () => {
      expect(inbound({ labels: pod.metadata.labels }, grpcPort)).toBe(isServer);
      expect(outbound({ labels: pod.metadata.labels }, grpcPort)).toBe(isServer);
      expect(outbound({ labels: pod.metadata.labels }, metricsPort)).toBe(false);
    });

    it('lets COS reach DNS, PostgreSQL, its handlers and the trace collector, and nothing else', () => {
      const dns = { labels: { 'k8s-app': 'kube-dns' }, namespaceLabels: { [NAMESPACE_NAME]: 'kube-system' } };
      expect(outbound(dns, 53, 'UDP')).toBe(true);
      expect(outbound(dns, 53, 'TCP')).toBe(true);
      expect(config.store.kind).toBe('postgres');
      if (config.store.kind === 'postgres') {
        expect(outbound({ labels: { app: config.store.host } }, config.store.port), 'PostgreSQL').toBe(true);
      }
      for (const { host, port } of handlerTargets(container, config, all)) {
        expect(outbound({ labels: host.labels }, host.containerPort ?? port), `handler ${host.name}:${port}`).toBe(true);
      }
      const collector = new URL(config.telemetry.tracesEndpoint ?? 'http://none');
      if (config.telemetry.tracesEndpoint !== undefined) {
        const [, namespace] = collector.hostname.split('.');
        const target = { labels: { 'app.kubernetes.io/name': 'opentelemetry-collector' }, namespaceLabels: { [NAMESPACE_NAME]: namespace! } };
        expect(outbound(target, Number(collector.port)), config.telemetry.tracesEndpoint).toBe(true);
      }
      for (const port of [80, 443, 5432, 9000, 50051]) expect(outbound(stranger, port), `anything else on ${port}`).toBe(false);
      expect(outbound({ ...dns, namespaceLabels: { [NAMESPACE_NAME]: 'default' } }, 53, 'UDP')).toBe(false);
    });
  });

  it('lets only COS reach the handlers these manifests deploy', () => {
    for (const handler of deployments.filter((item) => !item.spec.template.spec.containers.some(isCos))) {
      const policy = ofKind<NetworkPolicy>(objects, 'NetworkPolicy').find((item) =>
        selects(item.spec.podSelector.matchLabels ?? {}, handler.spec.template.metadata.labels),
      )!;
      const container = handler.spec.template.spec.containers[0]!;
      const port = portOf(container, 'grpc')!;
      const named = (name: string) => portOf(container, name);
      for (const cos of cosDeployments) {
        expect(policyAllows(policy, 'ingress', { labels: cos.spec.template.metadata.labels }, port, 'TCP', named)).toBe(true);
      }
      expect(policyAllows(policy, 'ingress', { labels: { [CLIENT_LABEL]: 'true' } }, port, 'TCP', named)).toBe(false);
    }
  });

  it('probes every handler container in a way its server can answer', () => {
    for (const deployment of deployments) {
      for (const container of deployment.spec.template.spec.containers.filter((item) => !isCos(item))) {
        const env = containerEnv(container, all, { podIP: '10.1.2.3', labels: deployment.spec.template.metadata.labels });
        for (const variable of env.keys()) expect(isAllowedVariable('sample-handler', variable), variable).toBe(true);
        const port = Number(env.get('PORT'));
        const probes = probesOf(container);
        expect(probes.map(([kind]) => kind).sort()).toEqual(['livenessProbe', 'readinessProbe']);
        for (const [kind, probe] of probes) {
          if (probe.tcpSocket) {
            // kubelet connects from outside the pod: the handler must listen on the pod's IP
            expect(env.get('HOST'), kind).toBe('0.0.0.0');
            expect(portOf(container, probe.tcpSocket.port), kind).toBe(port);
          } else {
            expect(probe.exec?.command.slice(0, 2), kind).toEqual(['node', '/app/healthcheck.mjs']);
            const options = parseArguments(probe.exec!.command.slice(2), Object.fromEntries(env));
            expect(options).toMatchObject({ port, acceptUnimplemented: true });
          }
        }
      }
    }
  });
});

describe('deploy/kubernetes', () => {
  it('has exactly the variants that are tested', () => {
    const dirs = readdirSync(KUBERNETES, { withFileTypes: true }).filter((entry) => entry.isDirectory()).map((entry) => entry.name);
    expect(dirs.sort()).toEqual(Object.keys(VARIANTS).sort());
  });

  it('gives cos-readside the store the standalone cos-server writes: one ConfigMap and Secret, the same shards', () => {
    const server = ofKind<Deployment>(render('standalone'), 'Deployment').find((item) => item.metadata.name === 'chief-of-state')!;
    const readside = ofKind<Deployment>(render('readside'), 'Deployment')[0]!;
    const refs = (deployment: Deployment) =>
      deployment.spec.template.spec.containers[0]!.envFrom!.map((source) => source.configMapRef?.name ?? `secret:${source.secretRef?.name}`);
    expect(refs(readside)).toContain('chief-of-state-store');
    expect(refs(readside)).toContain('secret:chief-of-state-postgres');
    expect(refs(server)).toContain('chief-of-state-store');
    const serverConfig = cosConfig(server, server.spec.template.spec.containers[0]!, cluster('standalone')).loaded.config;
    const readsideConfig = cosConfig(readside, readside.spec.template.spec.containers[0]!, cluster('readside')).loaded.config;
    expect(readsideConfig.store).toEqual(serverConfig.store);
    expect(readsideConfig.numShards).toBe(serverConfig.numShards);
    // the read sides run in cos-readside only
    expect(serverConfig.readSide.enabled).toBe(false);
    expect(readsideConfig.readSide.enabled).toBe(true);
    expect(readsideConfig.readSide.readSides.map((side) => side.readSideId)).toEqual(['balances']);
  });
});

describe('deploy/kubernetes/tls', () => {
  interface Certificate extends K8sObject {
    readonly spec: {
      readonly secretName: string;
      readonly commonName?: string;
      readonly dnsNames?: readonly string[];
      readonly isCA?: boolean;
      readonly usages?: readonly string[];
      readonly issuerRef: { readonly name: string; readonly kind: string };
    };
  }
  interface Issuer extends K8sObject {
    readonly spec: { readonly ca?: { readonly secretName: string }; readonly selfSigned?: object };
  }
  const objects = render('tls');
  const certificates = ofKind<Certificate>(objects, 'Certificate');
  const issuers = ofKind<Issuer>(objects, 'Issuer');
  const deployment = ofKind<Deployment>(objects, 'Deployment').find((item) => item.metadata.name === 'chief-of-state')!;
  const pod = deployment.spec.template.spec;
  const container = pod.containers.find(isCos)!;
  const env = containerEnv(container, objects, { podIP: '10.1.2.3', labels: deployment.spec.template.metadata.labels });
  /** The Secret volume and the key inside it that a file setting names. */
  const fileOf = (name: string) => {
    const path = env.get(name);
    expect(path, name).toBeDefined();
    const mount = container.volumeMounts?.find((item) => path!.startsWith(`${item.mountPath}/`));
    expect(mount?.readOnly, `${name} on a read-only mount`).toBe(true);
    const volume = pod.volumes?.find((item) => item.name === mount!.name);
    expect(volume?.secret, `${name} from a Secret volume`).toBeDefined();
    return { secretName: volume!.secret!.secretName, key: path!.slice(mount!.mountPath.length + 1) };
  };

  it('mounts every certificate, key and token file from a Secret volume, read-only, readable by the process group only', () => {
    const fileSettings = [...env.keys()].filter((name) => /_FILE$|^COS_POSTGRES_SSL_(ROOT_CERT|CERT|KEY)$/.test(name));
    expect(fileSettings.length).toBeGreaterThanOrEqual(6);
    for (const name of fileSettings) fileOf(name);
    for (const volume of pod.volumes ?? []) if (volume.secret) expect(volume.secret.defaultMode, volume.name).toBe(0o440);
    expect(pod.securityContext?.['fsGroup']).toBe(1000);
    // secrets stay out of the environment and the ConfigMaps
    for (const [name, value] of env) if (name !== 'COS_POSTGRES_PASSWORD') expect(value, name).not.toMatch(/BEGIN|replace-me/);
  });

  it('serves the certificate cert-manager issues, for clients and replicas, from the CA that verifies clients', () => {
    const cert = fileOf('COS_TLS_CERT_FILE');
    const key = fileOf('COS_TLS_KEY_FILE');
    const clientCa = fileOf('COS_TLS_CLIENT_CA_FILE');
    expect([cert.key, key.key, clientCa.key]).toEqual(['tls.crt', 'tls.key', 'ca.crt']);
    expect(new Set([cert.secretName, key.secretName, clientCa.secretName]).size).toBe(1);
    const server = certificates.find((item) => item.spec.secretName === cert.secretName)!;
    expect(server, `a Certificate writes ${cert.secretName}`).toBeDefined();
    // clientAuth too: the replicas present it to each other when forwarding
    expect(server.spec.usages).toEqual(expect.arrayContaining(['server auth', 'client auth']));
    const names = [server.spec.commonName, ...(server.spec.dnsNames ?? [])];
    expect(names).toContain(env.get('COS_CLUSTER_TLS_SERVER_NAME'));
    for (const peer of env.get('COS_CLUSTER_PEER_NAMES')!.split(',')) expect(names).toContain(peer.trim());
    // the Service's name, as clients dial it
    expect(names).toContain('chief-of-state');
  });

  it('issues every certificate from one CA, itself a certificate cert-manager keeps', () => {
    for (const certificate of certificates) {
      const issuer = issuers.find((item) => item.metadata.name === certificate.spec.issuerRef.name);
      expect(issuer, certificate.metadata.name).toBeDefined();
      expect(certificate.spec.issuerRef.kind).toBe('Issuer');
      if (certificate.spec.isCA) expect(issuer!.spec.selfSigned, 'the root').toBeDefined();
      else expect(certificates.find((item) => item.spec.secretName === issuer!.spec.ca?.secretName)?.spec.isCA, certificate.metadata.name).toBe(true);
    }
  });

  it("lets in the application by its certificate's name, operators and Prometheus by token files of a Secret", () => {
    for (const name of env.get('COS_AUTH_CLIENT_NAMES')!.split(',')) {
      const client = certificates.find((item) => item.spec.commonName === name.trim());
      expect(client?.spec.usages, name).toContain('client auth');
    }
    for (const name of ['COS_ADMIN_TOKENS_FILE', 'COS_METRICS_TOKEN_FILE']) {
      const { secretName, key } = fileOf(name);
      const secret = ofKind<Secret>(objects, 'Secret').find((item) => item.metadata.name === secretName)!;
      expect(Object.keys(secretData(secret)), name).toContain(key);
    }
    expect(fileOf('COS_ADMIN_TOKENS_FILE').key).not.toBe(fileOf('COS_METRICS_TOKEN_FILE').key);
    expect(env.get('COS_POSTGRES_SSL_MODE')).toBe('verify-full');
  });
});

function mebibytes(quantity: string): number {
  const match = /^(\d+(?:\.\d+)?)(Mi|Gi|M|G)?$/.exec(quantity);
  if (!match) throw new Error(`unexpected quantity ${quantity}`);
  const factor = { Mi: 1, Gi: 1024, M: 1e6 / 2 ** 20, G: 1e9 / 2 ** 20 }[match[2] ?? 'Mi'] ?? 1;
  return Number(match[1]) * factor;
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([key, item]) => [key, sortKeys(item)]),
    );
  }
  return value;
}
