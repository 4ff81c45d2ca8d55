import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  containerEnv,
  mergePatch,
  policyAllows,
  renderKustomization,
  secretData,
  selects,
  type Container,
  type K8sObject,
  type NetworkPolicy,
} from './kubernetes.js';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'cos-kustomize-'));
  dirs.push(root);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

const KUSTOMIZATION = 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n';
const configMap = (name: string) => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\ndata:\n  A: "1"\n`;

describe('renderKustomization', () => {
  it('renders files and nested kustomizations, in order, skipping empty documents', () => {
    const root = tree({
      'kustomization.yaml': `${KUSTOMIZATION}resources:\n  - one.yaml\n  - base\n`,
      'one.yaml': `${configMap('one')}---\n---\n${configMap('two')}`,
      'base/kustomization.yaml': `${KUSTOMIZATION}resources: [three.yaml]\n`,
      'base/three.yaml': configMap('three'),
    });
    expect(renderKustomization(root).map((item) => [item.object.metadata.name, item.file])).toEqual([
      ['one', 'one.yaml'],
      ['two', 'one.yaml'],
      ['three', join('base', 'three.yaml')],
    ]);
  });

  it('refuses fields it does not apply, duplicate objects and incomplete documents', () => {
    expect(() => renderKustomization(tree({ 'kustomization.yaml': `${KUSTOMIZATION}resources: []\nnamespace: x\n` }))).toThrow(
      /"namespace" is not supported/,
    );
    expect(() =>
      renderKustomization(tree({ 'kustomization.yaml': `${KUSTOMIZATION}resources: [a.yaml, b.yaml]\n`, 'a.yaml': configMap('x'), 'b.yaml': configMap('x') })),
    ).toThrow(/ConfigMap\/\/x is defined twice/);
    expect(() =>
      renderKustomization(tree({ 'kustomization.yaml': `${KUSTOMIZATION}resources: [a.yaml]\n`, 'a.yaml': 'kind: ConfigMap\n' })),
    ).toThrow(/needs apiVersion, kind and metadata.name/);
    expect(() => renderKustomization(tree({ 'x.yaml': '' }))).toThrow(/no kustomization.yaml/);
  });
});

describe('containerEnv', () => {
  const objects = [
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' }, data: { A: 'from-map', B: 'map' } },
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 's' },
      data: { A: Buffer.from('from-secret').toString('base64'), P: Buffer.from('x').toString('base64') },
      stringData: { P: 'plain wins' },
    },
  ] as unknown as K8sObject[];
  const pod = { podIP: '10.0.0.9', labels: { app: 'cos' } };

  it('applies envFrom in order, then env, which wins', () => {
    const container: Container = {
      name: 'x',
      image: 'i',
      envFrom: [{ configMapRef: { name: 'c' } }, { secretRef: { name: 's' } }],
      env: [
        { name: 'B', value: 'env' },
        { name: 'IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
        { name: 'LABEL', valueFrom: { fieldRef: { fieldPath: "metadata.labels['app']" } } },
        { name: 'FROM_MAP', valueFrom: { configMapKeyRef: { name: 'c', key: 'A' } } },
        { name: 'FROM_SECRET', valueFrom: { secretKeyRef: { name: 's', key: 'P' } } },
      ],
    };
    expect(Object.fromEntries(containerEnv(container, objects, pod))).toEqual({
      A: 'from-secret',
      B: 'env',
      P: 'plain wins',
      IP: '10.0.0.9',
      LABEL: 'cos',
      FROM_MAP: 'from-map',
      FROM_SECRET: 'plain wins',
    });
  });

  it('fails on references the kubelet could not resolve', () => {
    const missing = (container: Partial<Container>) => () => containerEnv({ name: 'x', image: 'i', ...container }, objects, pod);
    expect(missing({ envFrom: [{ configMapRef: { name: 'nope' } }] })).toThrow(/no ConfigMap nope/);
    expect(missing({ env: [{ name: 'A', valueFrom: { secretKeyRef: { name: 's', key: 'nope' } } }] })).toThrow(/no key nope/);
    expect(missing({ env: [{ name: 'A', valueFrom: { fieldRef: { fieldPath: "metadata.labels['none']" } } }] })).toThrow(/no such label/);
  });

  it('decodes Secret data', () => {
    expect(secretData(objects[1] as never)).toEqual({ A: 'from-secret', P: 'plain wins' });
  });
});

describe('selects', () => {
  it('needs every selector label, and at least one', () => {
    expect(selects({ app: 'a' }, { app: 'a', tier: 'x' })).toBe(true);
    expect(selects({ app: 'a', tier: 'y' }, { app: 'a', tier: 'x' })).toBe(false);
    expect(selects({}, { app: 'a' })).toBe(false);
  });
});

describe('policyAllows', () => {
  const policy = {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: 'p' },
    spec: {
      podSelector: { matchLabels: { app: 'cos' } },
      policyTypes: ['Ingress', 'Egress'],
      ingress: [
        { from: [{ podSelector: { matchLabels: { client: 'true' } } }], ports: [{ protocol: 'TCP', port: 'grpc' }] },
        {
          from: [{ namespaceSelector: { matchLabels: { ns: 'monitoring' } }, podSelector: { matchLabels: { app: 'prometheus' } } }],
          ports: [{ port: 9102 }],
        },
      ],
      egress: [
        { to: [{ namespaceSelector: { matchLabels: { ns: 'kube-system' } } }], ports: [{ protocol: 'UDP', port: 53 }] },
        { to: [{ ipBlock: { cidr: '10.0.0.0/8' } }], ports: [{ port: 5432 }] },
      ],
    },
  } as NetworkPolicy;
  const named = (name: string) => ({ grpc: 9000 })[name];

  it('matches pods by label in the same namespace, and named ports on the listening pod', () => {
    expect(policyAllows(policy, 'ingress', { labels: { client: 'true', x: 'y' } }, 9000, 'TCP', named)).toBe(true);
    expect(policyAllows(policy, 'ingress', { labels: { client: 'true' } }, 9102, 'TCP', named)).toBe(false);
    expect(policyAllows(policy, 'ingress', { labels: { client: 'false' } }, 9000, 'TCP', named)).toBe(false);
    // a pod selector alone means the policy's own namespace
    expect(policyAllows(policy, 'ingress', { labels: { client: 'true' }, namespaceLabels: { ns: 'other' } }, 9000, 'TCP', named)).toBe(false);
  });

  it('matches namespace and pod selectors together, and the protocol', () => {
    const prometheus = { labels: { app: 'prometheus' }, namespaceLabels: { ns: 'monitoring' } };
    expect(policyAllows(policy, 'ingress', prometheus, 9102)).toBe(true);
    expect(policyAllows(policy, 'ingress', { ...prometheus, labels: { app: 'other' } }, 9102)).toBe(false);
    expect(policyAllows(policy, 'ingress', prometheus, 9102, 'UDP')).toBe(false);
    expect(policyAllows(policy, 'egress', { labels: { any: 'pod' }, namespaceLabels: { ns: 'kube-system' } }, 53, 'UDP')).toBe(true);
    expect(policyAllows(policy, 'egress', { labels: { any: 'pod' }, namespaceLabels: { ns: 'kube-system' } }, 53, 'TCP')).toBe(false);
  });

  it('matches no pod with an ipBlock', () => {
    expect(policyAllows(policy, 'egress', { labels: { app: 'postgres' } }, 5432)).toBe(false);
  });
});

describe('patches', () => {
  it('merge maps, delete null keys, merge named lists by name and replace the others', () => {
    const target = {
      spec: {
        replicas: 2,
        containers: [
          { name: 'a', env: [{ name: 'X', value: '1' }], args: ['--one'], probe: { grpc: { port: 9000 }, periodSeconds: 5 } },
          { name: 'b' },
        ],
      },
    };
    const patch = {
      spec: {
        containers: [
          { name: 'a', env: [{ name: 'Y', value: '2' }, { name: 'X', value: '3' }], args: ['--two'], probe: { grpc: null, httpGet: { port: 'metrics' } } },
          { name: 'c' },
        ],
      },
    };
    expect(mergePatch(target, patch)).toEqual({
      spec: {
        replicas: 2,
        containers: [
          { name: 'c' },
          {
            name: 'a',
            env: [{ name: 'Y', value: '2' }, { name: 'X', value: '3' }],
            args: ['--two'],
            probe: { httpGet: { port: 'metrics' }, periodSeconds: 5 },
          },
          { name: 'b' },
        ],
      },
    });
  });

  it('apply to the object the patch names, and a patch of nothing throws', () => {
    const root = tree({
      'base/kustomization.yaml': `${KUSTOMIZATION}resources: [one.yaml]\n`,
      'base/one.yaml': configMap('one'),
      'kustomization.yaml': `${KUSTOMIZATION}resources: [base]\npatches:\n  - path: patch.yaml\n`,
      'patch.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: one\ndata:\n  B: "2"\n',
    });
    expect(renderKustomization(root).map(({ object }) => object)).toEqual([
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'one' }, data: { A: '1', B: '2' } },
    ]);
    const missing = tree({
      'kustomization.yaml': `${KUSTOMIZATION}resources: [one.yaml]\npatches:\n  - path: patch.yaml\n`,
      'one.yaml': configMap('one'),
      'patch.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: two\n',
    });
    expect(() => renderKustomization(missing)).toThrow(/no ConfigMap\/two to patch/);
  });
});
