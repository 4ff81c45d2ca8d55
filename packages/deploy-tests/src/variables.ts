import { CONFIG_VARIABLES } from '@chiefofstate/config';

/** Every exact name COS reads: documented names and aliases. */
export const COS_VARIABLE_NAMES: ReadonlySet<string> = new Set(
  CONFIG_VARIABLES.flatMap((variable) => [variable.name, ...variable.aliases]).filter((name) => !name.includes('<')),
);

/** Names whose values are secrets (passwords), documented names and aliases. */
export const SECRET_VARIABLE_NAMES: ReadonlySet<string> = new Set(
  CONFIG_VARIABLES.filter((variable) => variable.secret).flatMap((variable) => [variable.name, ...variable.aliases]),
);

const READ_SIDE_SETTING = /^COS_READ_SIDE_CONFIG__(HOST|PORT|USE_TLS|TIMEOUT|AUTO_START|ENABLED|FAILURE_POLICY)__[A-Za-z0-9_-]+$/;
const PUBLISHER_SETTING = /^COS_PUBLISHER_CONFIG__(SINK|URL|SUBJECT|EXCHANGE|ROUTING_KEY|FORMAT|TIMEOUT|AUTO_START|ENABLED)__[A-Za-z0-9_-]+$/;

/**
 * Whether COS reads this name (including per-read-side COS_READ_SIDE_CONFIG__<SETTING>__<ID> and
 * per-publisher COS_PUBLISHER_CONFIG__<SETTING>__<ID>).
 */
export function isCosVariable(name: string): boolean {
  return COS_VARIABLE_NAMES.has(name) || READ_SIDE_SETTING.test(name) || PUBLISHER_SETTING.test(name);
}

/** What runs in a container or compose service, told by its image. */
export type Workload = 'cos' | 'sample-handler' | 'postgres' | 'jaeger' | 'nats';

const IMAGES: readonly [RegExp, Workload][] = [
  [/^chiefofstate\/cos-(server|readside)(:|$)/, 'cos'],
  [/^chiefofstate\/sample-bank(:|$)/, 'sample-handler'],
  [/^postgres(:|$)/, 'postgres'],
  [/^jaegertracing\/all-in-one(:|$)/, 'jaeger'],
  // the broker of the sample's publisher, and the nats CLI that creates its stream
  [/^(nats|natsio\/nats-box)(:|$)/, 'nats'],
];

export function workloadOfImage(image: string): Workload | undefined {
  return IMAGES.find(([pattern]) => pattern.test(image))?.[1];
}

/**
 * The variables other than COS's that the deployment files may set, per workload; each is
 * documented in docs/deployment.md. NODE_ENV and the OpenTelemetry OTEL_* variables are allowed
 * everywhere.
 */
export const OTHER_VARIABLES: Readonly<Record<Workload, readonly string[]>> = {
  cos: [],
  'sample-handler': ['PORT', 'HOST', 'LOG_LEVEL', 'READ_SIDE_DATABASE_URL'],
  postgres: ['POSTGRES_USER', 'POSTGRES_PASSWORD', 'POSTGRES_DB'],
  jaeger: ['COLLECTOR_OTLP_ENABLED'],
  nats: [],
};

export const COMMON_VARIABLES: readonly string[] = ['NODE_ENV'];

/** Whether a deployment file may set `name` for this workload. */
export function isAllowedVariable(workload: Workload, name: string): boolean {
  if (COMMON_VARIABLES.includes(name) || /^OTEL_[A-Z0-9_]+$/.test(name)) return true;
  if (workload === 'cos') return isCosVariable(name);
  return OTHER_VARIABLES[workload].includes(name);
}

/**
 * Names that look like they hold a secret, whoever reads them. A `..._FILE` / `..._FILES`
 * variable names a file (mounted from a Secret) and is no secret itself.
 */
export function looksSecret(name: string): boolean {
  if (/_FILES?$/.test(name) && !SECRET_VARIABLE_NAMES.has(name)) return false;
  return SECRET_VARIABLE_NAMES.has(name) || /PASSWORD|SECRET|TOKEN|PRIVATE_KEY|CREDENTIAL/i.test(name);
}
