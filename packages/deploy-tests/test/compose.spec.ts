// docker/compose.yaml: services, images, environment (each COS service's loaded by the real
// configuration library), ports, healthchecks and start-up order.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  dependencies,
  interpolate,
  isAllowedVariable,
  looksSecret,
  parseCompose,
  parseDockerfile,
  publishedContainerPorts,
  serviceEnvironment,
  shellWords,
  stageHealthCheck,
  workloadOfImage,
  type ComposeService,
} from '../src/index.js';
import { loadCosConfig } from './support/cos-config.js';
import { COS_METRICS_PORT, IMAGES, imageName, readRepoFile, repoPath } from './support/repo.js';
// eslint-disable-next-line @nx/enforce-module-boundaries -- docker/ is no workspace project
import { parseArguments } from '../../../docker/healthcheck.mjs';

const compose = parseCompose(readRepoFile('docker/compose.yaml'));
const services = Object.entries(compose.services);
const cwd = mkdtempSync(join(tmpdir(), 'cos-compose-'));
afterAll(() => rmSync(cwd, { recursive: true, force: true }));

/** The environment as compose hands it to the container, with no variables set in the shell. */
function environment(service: ComposeService): Record<string, string> {
  return Object.fromEntries([...serviceEnvironment(service)].map(([name, value]) => [name, interpolate(value, {})]));
}

function service(name: string): ComposeService {
  const found = compose.services[name];
  if (!found) throw new Error(`no service ${name}`);
  return found;
}

const cosServices = services.filter(([, item]) => item.image && workloadOfImage(item.image) === 'cos');
const handlerServices = services.filter(([, item]) => item.image && workloadOfImage(item.image) === 'sample-handler');
const active = (item: ComposeService) => !item.profiles || item.profiles.length === 0;

describe('docker/compose.yaml', () => {
  it('runs PostgreSQL 15, cos-server, the sample handler, Jaeger and NATS by default; the read-side services in a profile', () => {
    expect(compose.name).toBe('chief-of-state');
    const byDefault = services.filter(([, item]) => active(item)).map(([name]) => name);
    expect(byDefault.sort()).toEqual(['cos-server', 'jaeger', 'nats', 'nats-stream', 'postgres', 'sample-bank']);
    expect(service('postgres').image).toBe('postgres:15');
    expect(service('jaeger').image).toMatch(/^jaegertracing\/all-in-one:1\.\d+\.\d+$/);
    expect(service('cos-readside').profiles).toEqual(['readside']);
    expect(service('sample-bank-readside').profiles).toEqual(['readside']);
  });

  it('has an image for every service, and builds ours from docker/ with the repository as context', () => {
    for (const [name, item] of services) {
      const workload = workloadOfImage(item.image ?? '');
      expect(workload, `${name}: ${item.image}`).toBeDefined();
      if (workload === 'cos' || workload === 'sample-handler') {
        const spec = IMAGES.find((image) => image.image === imageName(item.image!));
        expect(spec, name).toBeDefined();
        expect(item.build, name).toEqual({ context: '..', dockerfile: spec!.dockerfile });
        expect(resolve(repoPath('docker'), item.build!.context)).toBe(resolve(repoPath('.')));
        expect(existsSync(repoPath(spec!.dockerfile))).toBe(true);
        expect(item.image).toBe(`${spec!.image}:0.1.0`);
      }
    }
  });

  it('sets only variables the images read, documented in docs/deployment.md when not COS own', () => {
    for (const [name, item] of services) {
      const workload = workloadOfImage(item.image!)!;
      for (const variable of serviceEnvironment(item).keys()) {
        expect(isAllowedVariable(workload, variable), `${name}: ${variable}`).toBe(true);
      }
    }
  });

  it('takes passwords only from the shell or an .env file, the same for PostgreSQL and COS', () => {
    const expressions = new Set<string>();
    for (const [name, item] of services) {
      for (const [variable, raw] of serviceEnvironment(item)) {
        if (!looksSecret(variable)) continue;
        expect(raw, `${name}: ${variable}`).toMatch(/^\$\{COS_POSTGRES_PASSWORD:-[^}]*\}$/);
        expressions.add(raw);
      }
    }
    expect(expressions.size).toBe(1);
    expect(serviceEnvironment(service('postgres')).get('POSTGRES_PASSWORD')).toBe([...expressions][0]);
    // set in the shell, the value reaches both
    expect(interpolate([...expressions][0]!, { COS_POSTGRES_PASSWORD: 's3cret' })).toBe('s3cret');
  });

  describe.each(cosServices)('%s', (name, item) => {
    const env = environment(item);
    const { config, warnings } = loadCosConfig(item.image!, env, cwd);

    it('starts with its environment: the configuration library accepts it without a warning', () => {
      expect(warnings).toEqual([]);
      expect(config.store.kind).toBe('postgres');
    });

    it('talks to the postgres service with its database and user', () => {
      const postgres = environment(service('postgres'));
      expect(config.store).toMatchObject({
        kind: 'postgres',
        host: 'postgres',
        port: 5432,
        user: postgres['POSTGRES_USER'],
        database: postgres['POSTGRES_DB'],
        password: postgres['POSTGRES_PASSWORD'],
      });
      expect(dependencies(item).get('postgres')).toEqual({ condition: 'service_healthy', required: true });
    });

    it('publishes its gRPC and metrics ports, and its healthcheck asks the gRPC port', () => {
      expect(publishedContainerPorts(item)).toEqual([config.server.port, config.telemetry.metricsPort]);
      expect(config.telemetry.metricsPort).toBe(COS_METRICS_PORT);
      const test = item.healthcheck!.test as string[];
      expect(test.slice(0, 3)).toEqual(['CMD', 'node', '/app/healthcheck.mjs']);
      const options = parseArguments(test.slice(3), env);
      expect(options.port).toBe(config.server.port);
      expect(options.acceptUnimplemented).toBe(false);
    });

    it('sends its traces to Jaeger over OTLP/HTTP', () => {
      expect(config.telemetry.tracesEndpoint).toBe('http://jaeger:4318/v1/traces');
      expect(publishedContainerPorts(service('jaeger'))).toContain(4318);
      expect(environment(service('jaeger'))['COLLECTOR_OTLP_ENABLED']).toBe('true');
    });

    it('runs the read side, calling the sample read side service', () => {
      expect(config.readSide.enabled).toBe(true);
      const [readSide] = config.readSide.readSides;
      const handler = environment(service(readSide!.host));
      expect(Number(handler['PORT'])).toBe(readSide!.port);
    });

    it('waits for what it calls, optionally for services of a profile it is not in', () => {
      for (const [dependency, { condition, required }] of dependencies(item)) {
        const target = service(dependency);
        if (condition === 'service_healthy') expect(target.healthcheck, dependency).toBeDefined();
        if (active(item) && !active(target)) expect(required, `${name} -> ${dependency}`).toBe(false);
      }
    });
  });

  it('cos-server calls the sample-bank service on the port it listens on, once it is healthy', () => {
    const { config } = loadCosConfig(service('cos-server').image!, environment(service('cos-server')), cwd);
    expect(config.writeSide.host).toBe('sample-bank');
    expect(Number(environment(service('sample-bank'))['PORT'])).toBe(config.writeSide.port);
    expect(dependencies(service('cos-server')).get('sample-bank')).toEqual({ condition: 'service_healthy', required: true });
    expect(config.cluster).toMatchObject({ mode: 'docker', dockerServiceName: 'cos-server', replicaCount: 1 });
  });

  it('cos-server publishes every event to NATS JetStream on the subject of the stream nats-stream creates, once it exists', () => {
    const { config, warnings } = loadCosConfig(service('cos-server').image!, environment(service('cos-server')), cwd);
    expect(warnings).toEqual([]);
    expect(config.publishers).toEqual([
      expect.objectContaining({ publisherId: 'bank-events', sink: 'nats', url: 'nats://nats:4222', subject: 'bank.events', enabled: true, autoStart: true }),
    ]);
    expect(config.subscriptions.enabled).toBe(true);
    const nats = service('nats');
    expect(nats.command).toEqual(expect.arrayContaining(['--jetstream']));
    expect(publishedContainerPorts(nats)).toEqual([4222]);
    const setup = (service('nats-stream').command as string[]).join(' ');
    expect(setup).toContain('stream add bank-events --subjects bank.events');
    expect(setup).toContain('--server nats://nats:4222');
    expect(dependencies(service('nats-stream')).get('nats')).toEqual({ condition: 'service_healthy', required: true });
    expect(dependencies(service('cos-server')).get('nats-stream')).toEqual({ condition: 'service_completed_successfully', required: true });
    expect(compose.volumes).toHaveProperty(['nats-data']);
  });

  it.each(handlerServices)('%s listens on all interfaces and its healthcheck asks its port', (_name, item) => {
    const env = environment(item);
    expect(env['HOST']).toBe('0.0.0.0');
    const test = item.healthcheck!.test as string[];
    expect(test.slice(0, 3)).toEqual(['CMD', 'node', '/app/healthcheck.mjs']);
    const options = parseArguments(test.slice(3), env);
    expect(options.port).toBe(Number(env['PORT']));
    expect(options.acceptUnimplemented).toBe(true);
  });

  it('uses the same probe as the images\' HEALTHCHECK', () => {
    for (const [name, item] of services.filter(([, entry]) => entry.build)) {
      const image = parseDockerfile(readRepoFile(item.build!.dockerfile));
      const check = stageHealthCheck(image.stages.at(-1)!)!;
      const words = check.shellForm ? shellWords(check.command[2]!) : [...check.command];
      expect((item.healthcheck!.test as string[]).slice(1, 3), name).toEqual(words.slice(0, 2));
    }
  });

  it('checks PostgreSQL with pg_isready on its database', () => {
    const postgres = service('postgres');
    const env = environment(postgres);
    expect(postgres.healthcheck!.test).toEqual(['CMD', 'pg_isready', '-U', env['POSTGRES_USER'], '-d', env['POSTGRES_DB']]);
    expect(postgres.volumes).toEqual(['postgres-data:/var/lib/postgresql/data']);
    expect(compose.volumes).toHaveProperty(['postgres-data']);
  });

  it('publishes each host port once, with the Jaeger UI on 16686', () => {
    const published = services.flatMap(([, item]) =>
      (item.ports ?? []).map((port) => (typeof port === 'string' ? port.split(':').slice(-2)[0] : String(port.published))),
    );
    expect(new Set(published).size).toBe(published.length);
    expect(publishedContainerPorts(service('jaeger'))).toContain(16686);
  });
});
